"""Train and evaluate on a subset of the Grocery Store train/val splits in ../shared.

The full splits (2,640 + 296 images, 8 augmented views each) take several
minutes of feature extraction on a two-core runner, so CI uses 12 classes:
8 training images of each from train.txt, and every val.txt image of those
classes. The numbers asserted are far below what the full run reaches; they
catch a pipeline that has stopped learning, not a regression of a point.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.training.evaluate import evaluate_model, write_report
from inference.training.trainer import train

from .conftest import tiny_config

GROCERY = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "grocery-store"
# Distinct-looking classes from all three departments (class ids of classes.csv).
CLASSES = (0, 6, 8, 9, 14, 23, 29, 41, 45, 61, 68, 71)
TRAIN_PER_CLASS = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (GROCERY / "train.txt").is_file(),
        reason=f"the Grocery Store data set is not at {GROCERY}",
    ),
]


def _subset(out: Path, split: str, per_class: int | None) -> Path:
    """A list file with absolute image paths, and classes.csv beside it."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(GROCERY / "classes.csv", out / "classes.csv")
    taken: dict[int, int] = {}
    lines = []
    for line in (GROCERY / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rel, fine, coarse = (p.strip() for p in line.split(","))
        cls = int(fine)
        if cls in CLASSES and (per_class is None or taken.get(cls, 0) < per_class):
            taken[cls] = taken.get(cls, 0) + 1
            lines.append(f"{GROCERY / rel}, {fine}, {coarse}")
    path = out / f"{split}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_grocery_subset_trains_and_evaluates(tmp_path: Path, feature_cache: Path) -> None:
    train_list = _subset(tmp_path / "data", "train", TRAIN_PER_CLASS)
    val_list = _subset(tmp_path / "data", "val", None)
    result = train(
        tiny_config(
            tmp_path / "grocery-subset",
            feature_cache,
            data=train_list,
            val_data=val_list,
            augmentations=2,
            epochs=40,
        )
    )
    # 81 classes in classes.csv; 69 without training images are never predicted.
    assert len(result.manifest.labels) == 81
    assert result.training["data"]["split_sizes"]["train"] == len(CLASSES) * TRAIN_PER_CLASS
    evaluation = evaluate_model(
        result.model_dir,
        val_list,
        intra_op_threads=2,
        throughput_images=32,
        progress=False,
    )
    m = evaluation.metrics
    assert m["n_classes_present"] == len(CLASSES)
    # Chance is 1/12.
    assert m["top1_accuracy"] >= 0.8  # measured: 0.95-0.97
    assert m["top5_accuracy"] >= 0.95
    assert m["coarse_accuracy"] >= m["top1_accuracy"]
    # The numbers train reports on val are the exported model's numbers.
    assert m["top1_accuracy"] == pytest.approx(result.val_metrics["top1_accuracy"], abs=0.02)
    paths = write_report(evaluation, tmp_path / "report")
    assert all(p.stat().st_size > 0 for p in paths)
