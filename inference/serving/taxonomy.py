"""The product taxonomy and the ImageNet-1k class list, read from the package's data files.

``data/product_categories.tsv`` names the product categories; ``data/imagenet_labels.txt``
holds the 1000 ImageNet classes (WordNet id and names, in class-index order) and
``data/imagenet_categories.tsv`` gives each class its display label and product category.
The mapping is data, reviewed like code, so that changing it needs no code change.

Standard library only: the export script reads these files from the export environment.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "OTHER",
    "ImageNetClass",
    "category_mismatch",
    "imagenet_classes",
    "product_categories",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
OTHER = "other"
_NUM_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its index, WordNet id, display label, names and category."""

    index: int
    wnid: str
    label: str
    names: tuple[str, ...]
    category: str


def _data_rows(path: Path) -> list[list[str]]:
    """Rows of a tab-separated data file, without comments, blank lines and the header."""
    rows = [
        line.split("\t")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return rows[1:]


@functools.cache
def product_categories() -> dict[str, str]:
    """Return the product categories, in taxonomy order, with their descriptions."""
    path = DATA_DIR / "product_categories.tsv"
    categories: dict[str, str] = {}
    for row in _data_rows(path):
        if len(row) != 2 or row[0] in categories:
            raise ValueError(f"{path}: bad or repeated row {row!r}")
        categories[row[0]] = row[1]
    if OTHER not in categories:
        raise ValueError(f"{path}: the {OTHER!r} category is missing")
    return categories


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """Return the 1000 ImageNet-1k classes in class-index order, validated against each other."""
    labels_path = DATA_DIR / "imagenet_labels.txt"
    synsets = [
        line.split(" ", 1)
        for line in labels_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    mapping_path = DATA_DIR / "imagenet_categories.tsv"
    rows = _data_rows(mapping_path)
    if len(synsets) != _NUM_IMAGENET_CLASSES or len(rows) != _NUM_IMAGENET_CLASSES:
        raise ValueError(
            f"expected {_NUM_IMAGENET_CLASSES} classes, found {len(synsets)} in {labels_path} "
            f"and {len(rows)} in {mapping_path}"
        )
    known = product_categories()
    classes = []
    for i, ((wnid, names), row) in enumerate(zip(synsets, rows, strict=True)):
        index, row_wnid, label, category = row
        if int(index) != i or row_wnid != wnid:
            raise ValueError(f"{mapping_path}: row {i} is {row!r}, expected index {i} {wnid}")
        if category not in known:
            raise ValueError(
                f"{mapping_path}: class {i} ({label}) has unknown category {category!r}"
            )
        classes.append(
            ImageNetClass(i, wnid, label, tuple(n.strip() for n in names.split(",")), category)
        )
    return tuple(classes)


def category_mismatch(
    declared: str | None, category: str, score: float, flags: Sequence[str], min_score: float
) -> bool:
    """True when a seller declared another category than the one predicted with confidence.

    Never for an image the model cannot place (``unknown_product``), nor below
    ``min_score`` (``category_mismatch_min_score``); categories compare case-blind.
    """
    if declared is None or score < min_score or "unknown_product" in flags:
        return False
    return declared.strip().casefold() != category.strip().casefold()
