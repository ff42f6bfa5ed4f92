"""Train and evaluate on a subset of the Grocery Store train/val splits in ../shared.

The full splits (2,640 + 296 images, 8 augmented views each) take several
minutes of feature extraction on a two-core runner, so CI uses 12 classes:
8 training images of each from train.txt, and every val.txt image of those
classes. The numbers asserted are far below what the full run reaches; they
catch a pipeline that has stopped learning, not a regression of a point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.serving.options import EngineOptions
from inference.training.evaluate import evaluate_model, write_report
from inference.training.trainer import train
from tests.grocery import GROCERY, grocery_subset

from .conftest import tiny_config

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
    return grocery_subset(out, split, CLASSES, per_class)


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
        options=EngineOptions(providers=("cpu",), intra_op_threads=2),
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
