"""``vitrine bench consume``: what consuming alone costs, Faust's stream against the batch consumer.

Why the order agent does not use a Faust stream (:mod:`streams.worker.batchconsumer`):
N orders are published to a fresh topic, then each consumer reads all of them
from a fresh group in a process of its own, and does nothing with them:

- **faust iter**: a Faust agent, ``async for value in stream``;
- **faust take**: a Faust agent, ``stream.take(512, within=0.05)``;
- **batch consumer**: :class:`~streams.worker.batchconsumer.BatchConsumer` with a
  handler that returns at once (offsets committed per batch, as in the worker).

Each reports events per second from its first record to its last and the CPU
time its process used meanwhile (all threads), per event. The broker shares the
machine, as in production on one host. Each child reads the same ``VITRINE_*``
settings (brokers and security) as the command, so it runs against a secured
cluster as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["bench_consume_command"]

MODES = ("faust iter", "faust take", "batch consumer")


class _Meter:
    """Counts events; writes the result file and exits when ``n`` have been seen."""

    def __init__(self, n: int, out: Path) -> None:
        self.n, self.out, self.seen = n, out, 0
        self.t0 = self.c0 = 0.0

    def add(self, k: int) -> None:
        if self.seen == 0:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.seen += k
        if self.seen >= self.n:
            seconds = time.perf_counter() - self.t0
            cpu = time.process_time() - self.c0
            self.out.write_text(json.dumps({"events": self.seen, "seconds": seconds, "cpu": cpu}))
            os._exit(0)


def _run_faust(mode: str, topic: str, meter: _Meter) -> None:
    import faust  # noqa: PLC0415

    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.kafka_config import faust_credentials  # noqa: PLC0415

    settings = get_settings()
    app = faust.App(
        f"bench-consume-{uuid.uuid4().hex[:8]}",
        broker=["kafka://" + h for h in settings.kafka.brokers],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="vitrine-bench-consume-"),
    )
    source = app.topic(topic)

    @app.agent(source)
    async def null(stream: Any) -> None:
        if mode == "faust iter":
            async for _ in stream:
                meter.add(1)
        else:
            async for values in stream.take(512, within=0.05):
                meter.add(len(values))

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


def _run_batch_consumer(topic: str, meter: _Meter) -> None:
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.batchconsumer import BatchConsumer  # noqa: PLC0415
    from streams.worker.consumed import ConsumedRecord  # noqa: PLC0415
    from streams.worker.kafka_config import aiokafka_config, sasl_config  # noqa: PLC0415

    # Brokers and security only: the fetch sizes and wait stay aiokafka's, as measured.
    config = aiokafka_config(get_settings())
    keep = ("bootstrap_servers", "security_protocol", "ssl_context", *sasl_config(get_settings()))
    client_config = {k: config[k] for k in keep}

    async def handle(records: list[ConsumedRecord]) -> None:
        meter.add(len(records))

    async def main() -> None:
        consumer = BatchConsumer(
            topics=[topic],
            group_id=f"bench-consume-{uuid.uuid4().hex[:8]}",
            handle=handle,
            client_config=client_config,
            max_records=512,
            max_latency_ms=50,
        )
        await consumer.start()
        await asyncio.sleep(3600)

    asyncio.run(main())


def _child(mode: str, topic: str, n: int, out: Path) -> None:
    meter = _Meter(n, out)
    if mode == "batch consumer":
        _run_batch_consumer(topic, meter)
    else:
        _run_faust(mode, topic, meter)


def bench_consume_command(*, as_json: bool, n_events: int) -> int:
    """Publish ``n_events`` orders, consume them with each mode, print the figures."""
    from schemas import codec  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.tools.events import make_order  # noqa: PLC0415
    from streams.tools.kafka_clients import create_topics, make_producer  # noqa: PLC0415

    settings = get_settings()
    topic = f"bench-consume-{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings, linger_ms=20, batch_size=1 << 20)
    create_topics(settings, {topic: settings.topics.partitions})
    for i in range(n_events):
        order = make_order(f"o-{i}", [(f"p-{i % 500}", 1, 2.5)], region="eu-north")
        producer.send(topic, key=order.order_id.encode(), value=codec.encode(order))
    producer.flush()
    producer.close()
    results: dict[str, Any] = {"events": n_events, "partitions": settings.topics.partitions}
    for mode in MODES:
        if not as_json:
            print(f"{mode} ...")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "streams.tools.bench.consume", mode, topic]
            proc = subprocess.run(
                [*cmd, str(n_events), str(out)], capture_output=True, timeout=600, check=False
            )
            if not out.exists():
                tail = proc.stderr.decode(errors="replace")[-2000:]
                raise RuntimeError(f"{mode}: exited {proc.returncode} without a result\n{tail}")
            got = json.loads(out.read_text())
        results[mode] = {
            "per_s": round(got["events"] / got["seconds"], 1),
            "cpu_us_per_event": round(1e6 * got["cpu"] / got["events"], 1),
        }
    base = results["faust iter"]["per_s"]
    results["batch_consumer_vs_faust_iter"] = round(results["batch consumer"]["per_s"] / base, 1)
    if as_json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{n_events} orders, {settings.topics.partitions} partitions, consumed and dropped")
    print(f"{'consumer':<16} {'events/s':>10} {'CPU µs/event':>13}")
    for mode in MODES:
        r = results[mode]
        print(f"{mode:<16} {r['per_s']:>10.1f} {r['cpu_us_per_event']:>13.1f}")
    print(f"batch consumer / faust iter: {results['batch_consumer_vs_faust_iter']}x")
    return 0


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
