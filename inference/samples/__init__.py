"""Sample product photos shipped with the package (Grocery Store dataset, MIT licence).

Used by the tests, ``vitrine bench``, ``vitrine predict`` examples and the demo.
See ``README.md`` and ``LICENSE`` in this folder for the source and licence.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLES_DIR", "Sample", "sample_images", "samples"]

SAMPLES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """One sample photo and what it shows."""

    path: Path
    class_name: str  # fine class in the Grocery Store dataset, e.g. "Red-Bell-Pepper"
    coarse_class: str  # e.g. "Pepper"
    imagenet_class: str | None  # the ImageNet-1k label naming it, if ImageNet has one
    category: str  # the vitrine product category it belongs to


@functools.cache
def samples() -> tuple[Sample, ...]:
    """All sample photos, in ``samples.csv`` order."""
    with (SAMPLES_DIR / "samples.csv").open(encoding="utf-8", newline="") as f:
        return tuple(
            Sample(
                path=SAMPLES_DIR / row["file"],
                class_name=row["class_name"],
                coarse_class=row["coarse_class"],
                imagenet_class=row["imagenet_class"] or None,
                category=row["category"],
            )
            for row in csv.DictReader(f)
        )


def sample_images() -> list[Path]:
    """Paths of the sample photos (JPEG, 348 px short side)."""
    return [sample.path for sample in samples()]
