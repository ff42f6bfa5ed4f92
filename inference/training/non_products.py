"""Images that show no product at all, to measure how many of them the review rule catches.

The review policy must route what is no grocery product. Real photos of other
things are not in the data set, so when no folder of them is given the policy is
measured on these: 20 synthetic images (noise, checkerboards, stripes, gradients,
flat colours, printed pages), the kinds of image the tests send through the worker.
They are a floor, not a sample of what sellers upload: a photo of a shoe looks
more like a product than noise does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inference.training.dataset import IMAGE_SUFFIXES

__all__ = ["non_product_images", "synthetic_non_products"]

_SIDE = 300


def synthetic_non_products(n: int = 20, seed: int = 0) -> dict[str, bytes]:
    """``n`` PNG images (name -> bytes) that are no product, the same for the same seed."""
    rng = np.random.default_rng(seed)
    makers = [_noise, _checkerboard, _stripes, _gradient, _flat, _page]
    images: dict[str, bytes] = {}
    for i in range(n):
        make = makers[i % len(makers)]
        image = make(rng, i)
        images[f"{make.__name__.lstrip('_')}-{i:02d}"] = cv2.imencode(".png", image)[1].tobytes()
    return images


def non_product_images(folder: Path | None, n: int = 20) -> dict[str, bytes]:
    """The images in ``folder`` (name -> bytes), or the synthetic ones when it is None."""
    if folder is None:
        return synthetic_non_products(n)
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return {str(p.relative_to(folder)): p.read_bytes() for p in paths}


def _noise(rng: np.random.Generator, _i: int) -> np.ndarray:
    return rng.integers(0, 256, (_SIDE, _SIDE, 3), dtype=np.uint8)


def _checkerboard(rng: np.random.Generator, _i: int) -> np.ndarray:
    cell = int(rng.integers(10, 60))
    board = (np.indices((_SIDE, _SIDE)).sum(axis=0) // cell % 2 * 255).astype(np.uint8)
    return np.dstack([board] * 3)


def _stripes(rng: np.random.Generator, _i: int) -> np.ndarray:
    width = int(rng.integers(5, 40))
    colours = rng.integers(0, 256, (2, 3), dtype=np.uint8)
    index = (np.arange(_SIDE) // width % 2)[None, :].repeat(_SIDE, axis=0)
    return colours[index]


def _gradient(rng: np.random.Generator, _i: int) -> np.ndarray:
    start, end = rng.integers(0, 256, (2, 3))
    ramp = np.linspace(0, 1, _SIDE)[None, :, None]
    row = start + (end - start) * ramp
    return np.repeat(row, _SIDE, axis=0).astype(np.uint8)


def _flat(rng: np.random.Generator, _i: int) -> np.ndarray:
    return np.full((_SIDE, _SIDE, 3), rng.integers(0, 256, 3), np.uint8)


def _page(rng: np.random.Generator, i: int) -> np.ndarray:
    page = np.full((_SIDE, _SIDE, 3), 255, np.uint8)
    for line in range(int(rng.integers(1, 6))):
        text = f"INVOICE {2026 + i} No {int(rng.integers(1000, 9999))}"
        cv2.putText(page, text, (10, 40 + 50 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    return page
