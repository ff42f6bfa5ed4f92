"""What one worker's agents share: engine, search projection, cache, labeller, enricher, ...

Built on first use, so that commands which only need the app's command line
(``vitrine predict``, ``vitrine stack``) never load the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streams.settings import Settings
from streams.worker import metrics
from streams.worker.cache import LabelCache
from streams.worker.enrich import ProductCoverage
from streams.worker.recommend import RecommendConfig, Recommender

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


class Runtime:
    """The engine, cache, labeller, enricher and recommender of one worker, built once."""

    def __init__(
        self,
        settings: Settings,
        declare: Sequence[Any] = (),
        integrity: Any = None,
        corrections: Any = None,
    ) -> None:
        self.settings = settings
        #: The integrity index's view of listing-fingerprints (an IntegrityView; None:
        #: the labeller keeps one of its own), and the event set once it is loaded.
        self.integrity_view = integrity
        self.integrity_loaded: asyncio.Event | None = None
        #: The view of label-corrections (a CorrectionsView; None: no corrections),
        #: and the event set once it is loaded.
        self.corrections = corrections
        self.corrections_loaded: asyncio.Event | None = None
        # Faust declares only the topics agents subscribe to; outputs are ours.
        self.declare = list(declare)
        self._ready: asyncio.Future[Runtime] | None = None
        self.executor = ThreadPoolExecutor(
            max_workers=settings.model.inference_workers, thread_name_prefix="vitrine-infer"
        )
        # Redis needs no model: the view builder starts with these at once.
        self.cache = LabelCache.from_settings(settings)
        self.recommender = Recommender(self.cache, RecommendConfig.from_settings(settings))
        #: What tells order enrichment whether the product view covers the record.
        self.coverage: ProductCoverage | None = None

    @property
    def built(self) -> bool:
        """True once :meth:`ready` has finished building (the worker's readiness)."""
        built = self._ready
        return (
            built is not None
            and built.done()
            and not built.cancelled()
            and built.exception() is None
        )

    async def ready(self) -> Runtime:
        """Build everything once; every agent awaits the same build."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._build())
        return await self._ready

    async def _build(self) -> Runtime:
        # Imported here: the engine pulls in onnxruntime and opencv.
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        from inference.serving.search import EmbeddingProjection  # noqa: PLC0415
        from streams.worker.enrich import OrderEnricher  # noqa: PLC0415
        from streams.worker.fetch import FetchPolicy  # noqa: PLC0415
        from streams.worker.integrity import IntegrityConfig  # noqa: PLC0415
        from streams.worker.labelling import ImageLabeller  # noqa: PLC0415
        from streams.worker.model import build_engine, image_limits  # noqa: PLC0415

        s = self.settings
        # numpy's BLAS would start a thread per core for each small product (the
        # search projection) and spin, taking the cores the model's streams use;
        # profiled under load, one 32 x 1280 projection then took 9 ms of the loop.
        threadpool_limits(limits=1, user_api="blas")
        for topic in self.declare:
            await topic.maybe_declare()
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(
            self.executor, lambda: build_engine(s, warmup=False)
        )
        # One warm-up, with a full batch, so the first real one does not grow the arenas.
        await loop.run_in_executor(self.executor, self.engine.warmup, s.model.max_batch_size)
        self._log_engine()
        self.projection = EmbeddingProjection.for_model(self.engine.manifest)
        self.labeller = ImageLabeller(
            self.engine,
            self.cache,
            self.executor,
            limits=image_limits(s),
            fetch_policy=FetchPolicy.from_settings(s),
            fetch_retries=s.images.fetch_retries,
            claim_ttl_ms=s.images.claim_ttl_ms,
            integrity=IntegrityConfig.from_settings(s),
            projection=self.projection,
            integrity_view=self.integrity_view,
            integrity_loaded=self.integrity_loaded,
            corrections=self.corrections,
            corrections_loaded=self.corrections_loaded,
        )
        self.enricher = OrderEnricher(
            self.cache,
            label_wait_ms=s.orders.label_wait_ms,
            retry_interval_ms=s.orders.label_retry_interval_ms,
            hold_max_ms=s.orders.hold_max_ms,
            coverage=self.coverage,
        )
        return self

    def _log_engine(self) -> None:
        engine = self.engine
        metrics.EXECUTION_PROVIDER.info(
            {
                "provider": engine.provider,
                "device": engine.device,
                "model": f"{engine.model_name}:{engine.model_version}",
            }
        )
        logger.info(
            "engine ready: model %s %s on %s (%s), max batch %d, max latency %d ms",
            engine.model_name,
            engine.model_version,
            engine.provider,
            engine.device,
            self.settings.model.max_batch_size,
            self.settings.model.max_batch_latency_ms,
        )

    async def close(self) -> None:
        """Release connections and threads (after the agents have stopped)."""
        if self.built:
            await self.labeller.close()
        await self.cache.close()
        self.executor.shutdown(wait=False)
