"""How an engine is built: the one options object the worker and every tool share.

The worker turns its settings into :class:`EngineOptions`
(``streams.worker.model.engine_options``); ``vitrine evaluate``, ``quantize``,
``review-policy``, ``fit-search`` and the console get the same object from the same
settings, so a tool scores the graph, threads, batch size and review thresholds the
worker serves. :meth:`inference.serving.engine.Engine.build` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from inference.serving.defaults import DEFAULT_MAX_BATCH_SIZE
from inference.serving.review import ReviewThresholds

__all__ = ["CPU_ONLY", "EngineOptions"]


@dataclass(frozen=True)
class EngineOptions:
    """Everything about an engine that is not the model itself."""

    #: Execution providers, tried in order (``tensorrt``, ``cuda``, ``cpu``).
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    intra_op_threads: int = 0  # 0: ONNX Runtime's choice
    inter_op_threads: int = 1
    device_id: int = 0
    fp16: bool = True  # on CUDA, if its answers match FP32
    #: The CPU graph: ``auto`` (INT8 where the model has one), ``fp32`` or ``int8``.
    precision: str = "auto"
    top_k: int = 5
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    cache_dir: Path | None = None  # TensorRT engine caches
    cpu_streams: int | None = None  # None: one per available core
    #: Review thresholds that override the manifest's (None fields: the manifest's).
    thresholds: ReviewThresholds = field(default_factory=ReviewThresholds)

    def with_precision(self, precision: str) -> EngineOptions:
        """The same options with another CPU graph."""
        return replace(self, precision=precision)


#: CPU only, everything else as the worker's defaults: offline tools without settings.
CPU_ONLY = EngineOptions(providers=("cpu",))
