"""Training-time data augmentation with OpenCV and numpy.

Random resized crop, horizontal flip and colour jitter on uint8 RGB images.
Each augmented view draws from its own generator, seeded by the run seed, the
image's content hash and the view number (:func:`view_rng`), so a view is the
same in every run and on every machine, and extra views can be added later
without changing the earlier ones (which keeps the feature cache valid).

Hue is left alone by default: colour is what tells a red pepper from a yellow
one, or a Granny Smith from a Pink Lady.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = ["AugmentConfig", "augment", "random_resized_crop", "view_rng"]


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the training augmentation (kept in the model's metadata)."""

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue_deg: float = 0.0

    def key(self) -> str:
        """Short stable hash of the parameters, part of the feature-cache key."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def view_rng(seed: int, image_sha256: str, view: int) -> np.random.Generator:
    """The generator of one augmented view of one image."""
    digest = hashlib.sha256(f"{seed}:{image_sha256}:{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def random_resized_crop(
    image: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Crop a random area (fraction ``scale``, aspect ``ratio``) and resize it to size x size.

    Same sampling as torchvision's ``RandomResizedCrop``: ten tries, then a
    central crop with the aspect ratio clamped to ``ratio``.
    """
    height, width = image.shape[:2]
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return _resize(image[top : top + h, left : left + w], size, size)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return _resize(image[top : top + h, left : left + w], size, size)


def _colour_jitter(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32)
    # Random order, as torchvision's ColorJitter, so no one op always sees clipped input.
    for op in rng.permutation(4):
        if op == 0 and cfg.brightness > 0:
            x *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        elif op == 1 and cfg.contrast > 0:
            mean = float((x @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
            x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
        elif op == 2 and cfg.saturation > 0:
            grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            x = (x - grey) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey
        elif op == 3 and cfg.hue_deg > 0:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            shift = round(rng.uniform(-cfg.hue_deg, cfg.hue_deg) / 2)  # OpenCV hue is 0..179
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def augment(
    image: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """One augmented size x size uint8 RGB view of ``image`` (H, W, 3 uint8 RGB)."""
    view = random_resized_crop(image, size, rng, cfg.scale, cfg.ratio)
    if rng.random() < cfg.flip_p:
        view = view[:, ::-1]
    return np.ascontiguousarray(_colour_jitter(view, cfg, rng))
