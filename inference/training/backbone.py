"""The pretrained CNN that training starts from: its manifest, graph and preprocessing.

Training needs three things from a model directory (the shipped one by
default): the pooled penultimate features (its ``embedding`` output), the
engine's own preprocessing (:class:`inference.serving.preprocess.Preprocessor`, so the
features a head is trained on are the ones it sees when served), and the ONNX
graph to put the trained head on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from inference.serving.decode import LOCAL_FILE_LIMITS, decode_image
from inference.serving.manifest import ModelManifest
from inference.serving.preprocess import Preprocessor
from inference.training.errors import TrainError

__all__ = ["Backbone", "load_backbone"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    """A model directory seen as a feature extractor."""

    manifest: ModelManifest
    preprocessor: Preprocessor

    @property
    def onnx_path(self) -> Path:
        """The ONNX file."""
        return self.manifest.path

    @property
    def embedding_output(self) -> str:
        """Name of the pooled-features output."""
        name = self.manifest.embedding_output
        assert name is not None  # checked by load_backbone
        return name

    @property
    def input_size(self) -> int:
        """Side of the square crop the network takes."""
        return self.manifest.input_height

    @property
    def model_key(self) -> str:
        """Short hash of the graph and how crops enter it: the feature cache's top-level key."""
        p = self.preprocessor
        text = (
            f"{self.manifest.sha256}:{p.height}x{p.width}:{p.layout}:{p.dtype}:"
            f"{p.normalise}:{p.mean}:{p.std}:{p.bgr}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def serving_view_key(self) -> str:
        """Cache key of the serving view: it also depends on the resize before the crop."""
        p = self.preprocessor
        text = f"{p.resize_short_side}:{p.interpolation}"
        return "center-" + hashlib.sha256(text.encode()).hexdigest()[:8]

    def decode(self, data: bytes, source: Path | str = "<bytes>") -> npt.NDArray[np.uint8]:
        """Decode image bytes to RGB exactly as the engine does."""
        try:
            image = decode_image(data, LOCAL_FILE_LIMITS, min_side=self.manifest.resize_short_side)
        except Exception as exc:
            raise TrainError("train.failed", f"cannot use image {source}: {exc}") from exc
        return image.pixels

    def center_crop(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The serving view: the engine's resize + centre crop."""
        crop: npt.NDArray[np.uint8] = self.preprocessor.crops([image])[0]
        return crop

    def to_input(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        """(N, S, S, 3) uint8 RGB crops -> the tensor the graph takes."""
        if self.preprocessor.bgr:
            crops = np.ascontiguousarray(crops[..., ::-1])
        return self.preprocessor.to_model_input(crops)

    def session(
        self,
        *,
        extra_outputs: Sequence[str] = (),
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
    ) -> ort.InferenceSession:
        """An ONNX Runtime session; ``extra_outputs`` exposes inner tensors as outputs."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not extra_outputs:
            return ort.InferenceSession(str(self.onnx_path), opts, providers=list(providers))
        model = onnx.load(str(self.onnx_path))
        existing = {o.name for o in model.graph.output}
        for name in extra_outputs:
            if name not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        return ort.InferenceSession(model.SerializeToString(), opts, providers=list(providers))


def load_backbone(model_dir: Path) -> Backbone:
    """Load a model directory as a backbone; it must have an embedding output."""
    manifest = ModelManifest.load(Path(model_dir))
    if manifest.embedding_output is None:
        raise TrainError(
            "train.failed",
            f"{manifest.model_dir} declares no embedding output; "
            "training needs the pooled penultimate features",
        )
    if manifest.input_height != manifest.input_width:
        raise TrainError(
            "train.failed",
            f"{manifest.model_dir}: input {manifest.input_height}x{manifest.input_width} "
            "is not square; training crops are square",
        )
    backbone = Backbone(manifest, Preprocessor.from_manifest(manifest))
    logger.info(
        "backbone %s %s: input %s %s %dx%d (short side %d), embedding %s",
        manifest.name,
        manifest.version,
        manifest.input_dtype,
        manifest.input_layout,
        manifest.input_height,
        manifest.input_width,
        manifest.resize_short_side,
        manifest.embedding_size or "?",
    )
    return backbone
