"""The worker's web pages: ``/metrics``, ``/ready``, ``/recommend``, ``/similar``, a probe.

``/recommend/{product_id}?region=R&k=K`` answers JSON from
:mod:`streams.worker.recommend` (503 while Redis is down).

``POST /similar?k=K&category=C`` (body: an image file) and
``GET /similar/{product_id}?k=K&category=C`` answer the listed products that
look most alike, from this worker's search index (:mod:`streams.worker.search`;
503 until it has read the product-embeddings topic to the end once). The posted
image is decoded and embedded in the inference executor, like a listing's.

``/ready`` answers 200 once the engine is loaded, the order consumer runs (and
has paused no unreadable partition), the integrity index has read
listing-fingerprints and the corrections view label-corrections to the ends they
found at start, and this worker's share of
the Redis views has caught up with its record topics, 503 otherwise; :func:`worker_ready`
is what health checks (docker-compose, the images' HEALTHCHECK, the tools'
worker processes) call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inference.serving.errors import InferenceError
from streams.worker import metrics
from streams.worker.healthcheck import worker_ready
from streams.worker.search import EmbeddingFollower, Neighbour, SearchIndex

if TYPE_CHECKING:
    import faust

    from streams.worker.batchconsumer import BatchConsumer
    from streams.worker.follower import TopicFollower
    from streams.worker.runtime import Runtime
    from streams.worker.unreadable import UnreadablePartition
    from streams.worker.views import ViewBuilder

__all__ = ["MAX_RECOMMENDATIONS", "add_pages", "worker_ready"]

#: Most products one ``/recommend`` or ``/similar`` answer may ask for (``k``).
MAX_RECOMMENDATIONS = 100


def _k(request: Any) -> int | None:
    k = request.query.get("k", "10")
    return int(k) if k.isdigit() and 1 <= int(k) <= MAX_RECOMMENDATIONS else None


def _similar_json(index: SearchIndex, items: list[Neighbour], **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "model_version": index.model_version,
        "indexed": len(index),
        "items": [n.to_json() for n in items],
    }


async def _embed(runtime: Runtime, data: bytes) -> Any:
    """The posted image's prediction (with its embedding), in the inference executor."""
    loop = asyncio.get_running_loop()
    engine = runtime.engine
    predict = functools.partial(engine.predict_bytes, with_embedding=True)
    batch = await loop.run_in_executor(runtime.executor, predict, [data], runtime.labeller.limits)
    return batch.items[0]


def _add_similar_pages(app: faust.App, runtime: Runtime, search: EmbeddingFollower) -> None:
    """``POST /similar`` (an image) and ``GET /similar/{product_id}``."""

    def unavailable(web: Any) -> Any:
        if search.index is None and runtime.built and runtime.projection is None:
            return web.json({"error": "the model has no search projection"}, status=501)
        if search.index is None or not search.caught_up.is_set():
            return web.json({"error": "search index loading"}, status=503)
        return None

    from faust.web import View  # noqa: PLC0415  (faust stays out of this module's import)

    async def similar_image(web: Any, request: Any) -> Any:
        if (k := _k(request)) is None:
            return web.json({"error": f"k must be 1..{MAX_RECOMMENDATIONS}"}, status=400)
        if (busy := unavailable(web)) is not None:
            return busy
        index = search.index
        assert index is not None
        pred = await _embed(runtime, await request.read())
        if isinstance(pred, InferenceError):
            return web.json({"error": str(pred), "code": pred.code}, status=422)
        vector = runtime.projection.project(pred.embedding)[0]  # type: ignore[union-attr]
        items = index.similar(vector, k, category=request.query.get("category") or None)
        return web.json(_similar_json(index, items, label=pred.label, category=pred.category))

    @app.page("/similar")
    class SimilarImage(View):
        """``POST /similar``: a page function answers GET only."""

        async def post(self, request: Any, **kwargs: Any) -> Any:
            return await similar_image(self, request)

    @app.page("/similar/{product_id}")
    async def similar_product(web: Any, request: Any, product_id: str) -> Any:
        if (k := _k(request)) is None:
            return web.json({"error": f"k must be 1..{MAX_RECOMMENDATIONS}"}, status=400)
        if (busy := unavailable(web)) is not None:
            return busy
        index = search.index
        assert index is not None
        vector, meta = index.vector_of(product_id), index.meta(product_id)
        if vector is None or meta is None:
            return web.json({"error": f"product {product_id!r} is not indexed"}, status=404)
        items = index.similar(
            vector, k, category=request.query.get("category") or None,
            exclude=product_id, kind="product",
        )  # fmt: skip
        return web.json(
            _similar_json(
                index, items, product_id=product_id, label=meta.label, category=meta.category
            )
        )


def add_pages(
    app: faust.App,
    runtime: Runtime,
    order_consumer: BatchConsumer,
    unreadable: Sequence[UnreadablePartition],
    search: EmbeddingFollower | None = None,
    integrity: TopicFollower[Any] | None = None,
    views: ViewBuilder | None = None,
    corrections: TopicFollower[Any] | None = None,
) -> None:
    """Serve ``/metrics``, ``/ready``, ``/recommend`` and ``/similar`` on the app's web port.

    ``unreadable`` is the list Faust's consumer thread adds paused partitions to.
    """
    if search is not None:
        _add_similar_pages(app, runtime, search)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type.
        return web.bytes(metrics.render(), content_type=metrics.CONTENT_TYPE)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        paused = order_consumer.unreadable or unreadable
        # A Redis that is down or refuses this worker stops the views, not the
        # labelling: readiness waits for a rebuild, not for an outage to end.
        views_ready = views is None or views.caught_up.is_set() or views.redis_unavailable
        ready = runtime.built and order_consumer.running.is_set() and not paused and views_ready
        if integrity is not None:  # the duplicate checks wait for it
            ready = ready and integrity.caught_up.is_set()
        if corrections is not None:  # labelling waits for it
            ready = ready and corrections.caught_up.is_set()
        return web.json(
            {"ready": ready, "views_caught_up": views_ready}, status=200 if ready else 503
        )

    @app.page("/recommend/{product_id}")
    async def recommend_page(web: Any, request: Any, product_id: str) -> Any:
        # Imported here: the worker's pages load before its runtime is built.
        from streams.worker.cache import CacheUnavailable  # noqa: PLC0415

        k = request.query.get("k", "10")
        if not k.isdigit() or not 1 <= int(k) <= MAX_RECOMMENDATIONS:
            return web.json({"error": f"k must be 1..{MAX_RECOMMENDATIONS}, got {k!r}"}, status=400)
        if not runtime.built:
            return web.json({"error": "worker starting"}, status=503)
        if views is not None and not views.caught_up.is_set():
            # The sorted sets are being rebuilt from orders-enriched: not the truth yet.
            return web.json({"error": "recommendations rebuilding"}, status=503)
        try:
            recs = await runtime.recommender.recommend(
                product_id, region=request.query.get("region") or None, k=int(k)
            )
        except CacheUnavailable as exc:
            return web.json({"error": f"Redis unavailable: {exc}"}, status=503)
        return web.json(recs.to_json())
