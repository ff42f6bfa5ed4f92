"""The worker's model: the inference engine and image limits the settings describe.

One place turns settings into serving objects, for the worker and for the
tools that run the same engine without Kafka (``vitrine predict``, ``vitrine
bench``).
"""

from __future__ import annotations

from pathlib import Path

from inference.serving.decode import ImageLimits
from inference.serving.engine import Engine
from inference.serving.manifest import ModelManifest, default_model_dir
from inference.serving.options import EngineOptions
from inference.serving.review import ReviewThresholds
from streams.settings import Settings

__all__ = ["build_engine", "engine_options", "image_limits"]


def image_limits(settings: Settings) -> ImageLimits:
    """The image limits the settings ask for (``VITRINE_MAX_IMAGE_BYTES``/``_PIXELS``)."""
    return ImageLimits(
        max_bytes=settings.images.max_image_bytes, max_pixels=settings.images.max_image_pixels
    )


def engine_options(
    settings: Settings, *, top_k: int | None = None, precision: str | None = None
) -> EngineOptions:
    """How the worker builds its engine, from ``VITRINE_*`` settings: every tool uses this too."""
    m = settings.model
    return EngineOptions(
        providers=m.providers,
        intra_op_threads=m.intra_op_threads,
        inter_op_threads=m.inter_op_threads,
        device_id=m.gpu_device_id,
        fp16=m.fp16,
        precision=precision or m.precision,
        top_k=top_k or m.top_k,
        max_batch_size=m.max_batch_size,
        cache_dir=settings.state_dir / "trt-cache",
        thresholds=ReviewThresholds(
            kind_threshold=m.kind_threshold,
            ood_threshold=m.ood_threshold,
            product_threshold=m.product_threshold,
            confidence_threshold=m.confidence_threshold,
        ),
    )


def build_engine(
    settings: Settings,
    *,
    model_dir: Path | None = None,
    top_k: int | None = None,
    warmup: bool = True,
    precision: str | None = None,
) -> Engine:
    """The inference engine described by the settings (what the worker runs).

    The model is ``model_dir``, else ``VITRINE_MODEL_PATH``, else the shipped
    product model (``grocery-store``). TensorRT engine caches go under ``<state_dir>/trt-cache``.
    Raises :class:`ModelError` when the model cannot be used.
    """
    manifest = ModelManifest.load(model_dir or settings.model.model_path or default_model_dir())
    options = engine_options(settings, top_k=top_k, precision=precision)
    return Engine.build(manifest, options, warmup=warmup)
