"""Decoded RGB pictures -> the model's input tensor, exactly as the manifest specifies.

The manifest says: resize the short side to ``resize_short_side``, take the
centre ``input_height x input_width`` crop, then (if the graph does not do it
itself) subtract ``mean``, divide by ``std`` and lay out as NCHW float32.

Two things keep this cheap:

- the crop window is computed in source coordinates first and only that window
  is resized, straight into its slot of one batch array allocated per batch
  (no per-image intermediate arrays);
- for the shipped model normalisation and the NHWC -> NCHW transpose live in
  the ONNX graph, so the CPU hands over uint8 crops (a quarter of the bytes).
  Models whose manifest asks for float NCHW input are normalised here in one
  vectorised pass over the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference.serving.manifest import ModelManifest

__all__ = ["BLUR_THRESHOLD", "Preprocessor", "sharpness"]

logger = logging.getLogger(__name__)

#: Variance of the Laplacian of the model's grey crop below which it is flagged "blurry".
#: The 24 sample photos score 74-1408; the same crops blurred with a Gaussian of
#: sigma 2 score 6-22 (sigma 3: 3-7).
BLUR_THRESHOLD = 30.0

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Preprocessor:
    """Resize, centre-crop and (optionally) normalise images into one batch tensor."""

    height: int
    width: int
    resize_short_side: int
    interpolation: str = "linear"
    layout: str = "NHWC"
    dtype: str = "uint8"
    normalise: bool = False
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    bgr: bool = False

    @classmethod
    def from_manifest(cls, manifest: ModelManifest) -> Preprocessor:
        """Build the preprocessing the manifest describes."""
        return cls(
            height=manifest.input_height,
            width=manifest.input_width,
            resize_short_side=manifest.resize_short_side,
            interpolation=manifest.interpolation,
            layout=manifest.input_layout,
            dtype=manifest.input_dtype,
            normalise=not manifest.normalisation_in_graph,
            mean=manifest.mean,
            std=manifest.std,
            bgr=manifest.colour_order == "BGR",
        )

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The (top, left, crop_height, crop_width) window, in source pixels.

        Equivalent to resizing the short side to ``resize_short_side`` and taking
        the centre ``height x width``, without resizing what the crop drops.
        """
        scale = self.resize_short_side / min(height, width)
        crop_h = min(height, max(1, round(self.height / scale)))
        crop_w = min(width, max(1, round(self.width / scale)))
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def crop_into(self, image: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None:
        """Write the resized centre crop of one ``(H, W, 3)`` uint8 image into ``out``.

        ``linear`` and ``cubic`` are anti-aliased: a window more than twice the output
        size is first shrunk to twice the output size by area averaging. ``area``
        averages all the way (several times slower, same picture within noise).
        """
        top, left, crop_h, crop_w = self.crop_box(image.shape[0], image.shape[1])
        window = image[top : top + crop_h, left : left + crop_w]
        if window.shape[:2] == (self.height, self.width):
            out[...] = window
        else:
            interpolation = _INTERPOLATION[self.interpolation]
            shrinking = crop_h > self.height and crop_w > self.width
            source: npt.NDArray[Any] = window
            if interpolation == cv2.INTER_AREA and not shrinking:
                interpolation = cv2.INTER_LINEAR  # area averaging only helps when shrinking
            elif interpolation != cv2.INTER_AREA and (
                crop_h > 2 * self.height and crop_w > 2 * self.width
            ):
                source = cv2.resize(
                    window, (2 * self.width, 2 * self.height), interpolation=cv2.INTER_AREA
                )
            resized = cv2.resize(
                source, (self.width, self.height), dst=out, interpolation=interpolation
            )
            if resized is not out and not np.shares_memory(resized, out):  # pragma: no cover
                out[...] = resized
        if self.bgr:
            out[...] = out[..., ::-1]

    def crops(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        *,
        map_fn: Callable[[Callable[[int], None], range], object] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Return ``(N, height, width, 3)`` uint8 crops, allocated once for the batch.

        ``map_fn(work, indices)`` may run the per-image work on several threads
        (each image writes only its own slot); by default one after the other.
        """
        batch = np.empty((len(images), self.height, self.width, 3), dtype=np.uint8)

        def crop(i: int) -> None:
            self.crop_into(images[i], batch[i])

        if map_fn is None:
            for i in range(len(images)):
                crop(i)
        else:
            map_fn(crop, range(len(images)))
        return batch

    def to_model_input(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        """Turn uint8 NHWC crops into what the graph takes (no copy for uint8 NHWC)."""
        if not self.normalise and self.dtype == "uint8" and self.layout == "NHWC":
            return crops
        source: npt.NDArray[np.generic] = crops
        if self.layout == "NCHW":
            source = crops.transpose(0, 3, 1, 2)
        out = np.empty(source.shape, dtype=np.float32 if self.dtype == "float32" else np.uint8)
        if self.normalise:
            shape = (1, 3, 1, 1) if self.layout == "NCHW" else (1, 1, 1, 3)
            mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
            inv_std = (1.0 / np.asarray(self.std, dtype=np.float32)).reshape(shape)
            np.subtract(source, mean, out=out, casting="unsafe")
            out *= inv_std
        else:
            out[...] = source
        return out

    def batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.generic]:
        """Crops of ``images`` in the model's input layout and type."""
        return self.to_model_input(self.crops(images))


def sharpness(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """Variance of the Laplacian of each crop's grey image: low means blurry or featureless."""
    scores = np.empty(len(crops), dtype=np.float64)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        scores[i] = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    return scores
