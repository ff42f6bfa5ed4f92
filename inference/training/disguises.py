"""The copies another seller would upload: plain ones and disguised ones.

Each transform takes an image file and returns the copy's file (JPEG unless
said), the way ``vitrine evaluate-duplicates`` makes them. Plain copies are
what the hash alone catches (re-encoded, resized, cropped 10%, mirrored);
disguised ones are what sellers do to get past it: a border or letterboxing, a
tighter crop, a small rotation, a watermark or text, a colour change, a
screenshot round trip, heavy re-compression, and combinations. Every
transform is reported on its own, by family (:data:`FAMILIES`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["FAMILIES", "TRANSFORMS", "transform"]

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


def _jpeg(img: Any, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def _decode(data: bytes) -> Image:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable image")
    return np.asarray(img, np.uint8)


def _resize(img: Image, f: float) -> Image:
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return np.asarray(
        cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=interp), np.uint8
    )


def _crop(img: Image, off: float, rng: random.Random) -> Image:
    """Keep ``1 - off`` of each side, at a random place."""
    h, w = img.shape[:2]
    ch, cw = max(1, int(h * (1 - off))), max(1, int(w * (1 - off)))
    y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
    return img[y : y + ch, x : x + cw]


def _border(img: Image, frac: float, colour: tuple[int, int, int]) -> Image:
    h, w = img.shape[:2]
    t = max(1, int(min(h, w) * frac))
    return np.asarray(
        cv2.copyMakeBorder(img, t, t, t, t, cv2.BORDER_CONSTANT, value=colour), np.uint8
    )


def _letterbox(img: Image, aspect: float) -> Image:
    """Padded with black bars to ``aspect`` (width over height), as a video frame."""
    h, w = img.shape[:2]
    if w / h < aspect:
        pad = int(h * aspect) - w
        return np.asarray(
            cv2.copyMakeBorder(img, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_CONSTANT, value=0),
            np.uint8,
        )
    pad = int(w / aspect) - h
    return np.asarray(
        cv2.copyMakeBorder(img, pad // 2, pad - pad // 2, 0, 0, cv2.BORDER_CONSTANT, value=0),
        np.uint8,
    )


def _rotate(img: Image, degrees: float) -> Image:
    """Rotated about the centre on a white canvas of the same size (corners filled)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return np.asarray(
        cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(255,) * 3),
        np.uint8,
    )


def _watermark(img: Image, rng: random.Random) -> Image:
    """A semi-transparent text across the photo and a small logo text in a corner."""
    h, w = img.shape[:2]
    over = img.copy()
    scale = max(0.5, w / 320)
    text = rng.choice(["BEST PRICE", "SALE -30%", "shop4you", "ORIGINAL"])
    cv2.putText(
        over, text, (w // 10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, scale * 1.2, (255, 255, 255),
        max(1, int(3 * scale)), cv2.LINE_AA,
    )  # fmt: skip
    out = cv2.addWeighted(over, 0.5, img, 0.5, 0)
    cv2.putText(
        out, "(c) my-shop", (w // 20, h - h // 20), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5,
        (0, 0, 255), max(1, int(scale)), cv2.LINE_AA,
    )  # fmt: skip
    return np.asarray(out, np.uint8)


def _recolour(img: Image, rng: random.Random) -> Image:
    """Hue turned, saturation and brightness changed."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + rng.choice([-1, 1]) * rng.randint(15, 40)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.15) + rng.randint(-15, 15), 0, 255)
    return np.asarray(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), np.uint8)


def _screenshot(img: Image, rng: random.Random) -> Image:
    """Shown at another size inside an app's chrome, captured (PNG), then cropped loosely."""
    shown = _resize(img, rng.uniform(0.8, 1.5))
    h, w = shown.shape[:2]
    bar = max(8, h // 12)
    canvas = np.full((h + 3 * bar, w + bar, 3), 245, np.uint8)
    canvas[:bar] = (40, 40, 40)  # status bar
    y, x = 2 * bar, bar // 2
    canvas[y : y + h, x : x + w] = shown
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        raise ValueError("PNG encoding failed")
    shot = _decode(bytes(png.tobytes()))
    # The seller crops the capture roughly around the photo.
    m = max(2, bar // 3)
    return shot[y - m : y + h + m, x - m // 2 : x + w + m // 2]


def _recompressed(img: Image) -> Image:
    """Halved, JPEG quality 30 twice (a photo forwarded through chat apps)."""
    small = _resize(img, 0.5)
    return _decode(_jpeg(_decode(_jpeg(small, 30)), 30))


_Fn = Callable[[Image, random.Random], Image]
_WHITE = (255, 255, 255)

#: name -> (family, transform of the decoded BGR photo).
_ALL: dict[str, tuple[str, _Fn]] = {
    "jpeg_q60": ("plain", lambda i, r: _decode(_jpeg(i, 60))),
    "resized_70": ("plain", lambda i, r: _resize(i, 0.7)),
    "cropped_10": ("plain", lambda i, r: _crop(i, 0.1, r)),
    "mirrored": ("plain", lambda i, r: np.ascontiguousarray(i[:, ::-1])),
    "border_white_10": ("border", lambda i, r: _border(i, 0.1, _WHITE)),
    "border_white_20": ("border", lambda i, r: _border(i, 0.2, _WHITE)),
    "border_black_5": ("border", lambda i, r: _border(i, 0.05, (0, 0, 0))),
    "letterbox_16_9": ("border", lambda i, r: _letterbox(i, 16 / 9)),
    "cropped_20": ("crop", lambda i, r: _crop(i, 0.2, r)),
    "cropped_25": ("crop", lambda i, r: _crop(i, 0.25, r)),
    "cropped_30": ("crop", lambda i, r: _crop(i, 0.3, r)),
    "rotated_3": ("rotation", lambda i, r: _rotate(i, 3)),
    "rotated_5": ("rotation", lambda i, r: _rotate(i, -5)),
    "rotated_8": ("rotation", lambda i, r: _rotate(i, 8)),
    "rotated_10": ("rotation", lambda i, r: _rotate(i, -10)),
    "watermark": ("watermark", _watermark),
    "recoloured": ("recolour", _recolour),
    "greyscale": (
        "recolour",
        lambda i, r: np.asarray(
            cv2.cvtColor(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), np.uint8
        ),
    ),
    "screenshot": ("screenshot", _screenshot),
    "recompressed": ("recompression", lambda i, r: _recompressed(i)),
    "border_crop_20": ("combination", lambda i, r: _border(_crop(i, 0.2, r), 0.1, _WHITE)),
    "crop_20_rotated_5": ("combination", lambda i, r: _rotate(_crop(i, 0.2, r), 5)),
    "watermark_recolour_jpeg": (
        "combination",
        lambda i, r: _decode(_jpeg(_recolour(_watermark(i, r), r), 50)),
    ),
    "mirror_border_10": (
        "combination",
        lambda i, r: _border(np.ascontiguousarray(i[:, ::-1]), 0.1, _WHITE),
    ),
}

TRANSFORMS = tuple(_ALL)
#: transform -> its family ("plain" for the copies caught before disguises).
FAMILIES = {name: family for name, (family, _fn) in _ALL.items()}


def transform(data: bytes, name: str, rng: random.Random) -> bytes:
    """A copy of the image file ``data`` as another seller would upload it (JPEG q90)."""
    if name not in _ALL:
        raise ValueError(f"unknown transform {name!r}; one of {', '.join(TRANSFORMS)}")
    img = _decode(data)
    if name == "jpeg_q60":
        return _jpeg(img, 60)
    return _jpeg(_ALL[name][1](img, rng))
