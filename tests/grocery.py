"""The Grocery Store data set in ../shared, and subsets of its splits for tests."""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

GROCERY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "grocery-store"


def grocery_subset(out: Path, split: str, classes: Collection[int], per_class: int | None) -> Path:
    """A list file of ``split`` with absolute paths: ``per_class`` images (None: all) of each
    of ``classes`` (fine class ids of classes.csv), with classes.csv beside it."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(GROCERY / "classes.csv", out / "classes.csv")
    taken: dict[int, int] = {}
    lines = []
    for line in (GROCERY / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rel, fine, coarse = (p.strip() for p in line.split(","))
        cls = int(fine)
        if cls in classes and (per_class is None or taken.get(cls, 0) < per_class):
            taken[cls] = taken.get(cls, 0) + 1
            lines.append(f"{GROCERY / rel}, {fine}, {coarse}")
    path = out / f"{split}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
