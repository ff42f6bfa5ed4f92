"""``vitrine console``: start the feed, then serve the pages until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from streams.console.auth import console_secret
from streams.console.web import Console, build_app
from streams.settings import Settings

__all__ = ["run_console", "serve"]

logger = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the console until ``stop`` is set (or a signal arrives)."""
    cfg = settings.console
    console = Console(settings, console_secret(cfg))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(console), access_log=None)
    try:
        await console.feed.start()
        await runner.setup()
        site = web.TCPSite(runner, cfg.host, cfg.port)
        await site.start()
        logger.info(
            "console at http://%s:%d/ reviewing %s",
            cfg.host, cfg.port, ", ".join(console.feed.review_topics),
        )  # fmt: skip
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(console.feed.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, failed):
            task.cancel()
        if console.feed.failed.is_set():
            raise RuntimeError("the console stopped reading Kafka (see the error above)")
    finally:
        await runner.cleanup()
        await console.feed.stop()
        await console.photos.close()


def run_console(settings: Settings) -> None:
    """The command's body: log to stderr, serve until stopped."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings))
