"""Builders of small test images with known pixels (OpenCV and Pillow encoders)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def rgb_pattern(width: int = 64, height: int = 48) -> np.ndarray:
    """An RGB picture whose four quadrants are red, green, blue and white."""
    img = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    img[:h2, :w2] = (255, 0, 0)
    img[:h2, w2:] = (0, 255, 0)
    img[h2:, :w2] = (0, 0, 255)
    img[h2:, w2:] = (255, 255, 255)
    return img


def encode(ext: str, rgb: np.ndarray, params: list[int] | None = None) -> bytes:
    """Encode an RGB (or grey, or RGBA) array with OpenCV."""
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    else:
        arr = rgb
    ok, buf = cv2.imencode(ext, arr, params or [])
    assert ok
    return buf.tobytes()


def pil_bytes(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``rgb`` (as stored) tagged with an EXIF orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
