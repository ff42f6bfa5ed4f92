"""The worker's web pages: ``/metrics``, ``/ready``, ``/recommend``, and a probe for ``/ready``.

``/recommend/{product_id}?region=R&k=K`` answers JSON from
:mod:`streams.worker.recommend` (503 while Redis is down).

``/ready`` answers 200 once the engine is loaded and the order consumer runs
(and has paused no unreadable partition), 503 otherwise; :func:`worker_ready`
is what health checks (docker-compose, the images' HEALTHCHECK, the tools'
worker processes) call.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streams.worker import metrics

if TYPE_CHECKING:
    import faust

    from streams.worker.batchconsumer import BatchConsumer
    from streams.worker.runtime import Runtime
    from streams.worker.unreadable import UnreadablePartition

__all__ = ["MAX_RECOMMENDATIONS", "add_pages", "worker_ready"]

#: Most products one ``/recommend`` answer may ask for (``k``).
MAX_RECOMMENDATIONS = 100


def add_pages(
    app: faust.App,
    runtime: Runtime,
    order_consumer: BatchConsumer,
    unreadable: Sequence[UnreadablePartition],
) -> None:
    """Serve ``/metrics``, ``/ready`` and ``/recommend/{product_id}`` on the app's web port.

    ``unreadable`` is the list Faust's consumer thread adds paused partitions to.
    """

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type.
        return web.bytes(metrics.render(), content_type=metrics.CONTENT_TYPE)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        paused = order_consumer.unreadable or unreadable
        ready = runtime.built and order_consumer.running.is_set() and not paused
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/recommend/{product_id}")
    async def recommend_page(web: Any, request: Any, product_id: str) -> Any:
        # Imported here: the worker's pages load before its runtime is built.
        from streams.worker.cache import CacheUnavailable  # noqa: PLC0415

        k = request.query.get("k", "10")
        if not k.isdigit() or not 1 <= int(k) <= MAX_RECOMMENDATIONS:
            return web.json({"error": f"k must be 1..{MAX_RECOMMENDATIONS}, got {k!r}"}, status=400)
        if not runtime.built:
            return web.json({"error": "worker starting"}, status=503)
        try:
            recs = await runtime.recommender.recommend(
                product_id, region=request.query.get("region") or None, k=int(k)
            )
        except CacheUnavailable as exc:
            return web.json({"error": f"Redis unavailable: {exc}"}, status=503)
        return web.json(recs.to_json())


def worker_ready(host: str, port: int) -> bool:
    """True when a worker answers ``/ready`` on ``host:port`` with its engine loaded."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ready", timeout=2) as resp:
            return bool(json.load(resp).get("ready"))
    except (OSError, ValueError):
        return False
