"""A minimal Faust app for the foundation test: reverses each value it reads.

Run as ``python tests/integration/echo_app.py worker`` with ECHO_BOOTSTRAP,
ECHO_IN, ECHO_OUT and ECHO_APP_ID in the environment.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["ECHO_APP_ID"],
    broker="kafka://" + os.environ["ECHO_BOOTSTRAP"],
    key_serializer="raw",
    value_serializer="raw",
    web_port=int(os.environ["ECHO_WEB_PORT"]),
    web_host="127.0.0.1",
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["ECHO_IN"])
sink = app.topic(os.environ["ECHO_OUT"])


@app.agent(source)
async def reverse(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value[::-1])


if __name__ == "__main__":
    app.main()
