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
from streams.settings import Settings

__all__ = ["build_engine", "image_limits"]


def image_limits(settings: Settings) -> ImageLimits:
    """The image limits the settings ask for (``VITRINE_MAX_IMAGE_BYTES``/``_PIXELS``)."""
    return ImageLimits(
        max_bytes=settings.images.max_image_bytes, max_pixels=settings.images.max_image_pixels
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
    return Engine(
        manifest,
        providers=settings.model.providers,
        intra_op_threads=settings.model.intra_op_threads,
        inter_op_threads=settings.model.inter_op_threads,
        device_id=settings.model.gpu_device_id,
        fp16=settings.model.fp16,
        precision=precision or settings.model.precision,
        top_k=top_k or settings.model.top_k,
        max_batch_size=settings.model.max_batch_size,
        cache_dir=settings.state_dir / "trt-cache",
        warmup=warmup,
        confidence_threshold=settings.model.confidence_threshold,
        ood_threshold=settings.model.ood_threshold,
        kind_threshold=settings.model.kind_threshold,
        product_threshold=settings.model.product_threshold,
    )
