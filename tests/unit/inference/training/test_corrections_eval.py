"""The corrections experiment: halves stratified by class, and one real run of the served model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.serving.manifest import default_model_dir
from inference.training.corrections_eval import evaluate_corrections, halves, render_markdown
from inference.training.head import HeadConfig
from tests.grocery import GROCERY, grocery_subset

# Distinct classes from the three departments (class ids of classes.csv), as in
# test_grocery_subset.
CLASSES = (0, 6, 8, 9, 14, 23, 29, 41, 45, 61, 68, 71)


def test_halves_split_every_class_evenly_and_differ_by_seed() -> None:
    y = np.repeat(np.arange(5), [1, 2, 3, 7, 10])
    one = halves(y, np.random.default_rng(0))
    for c in range(5):
        counts = np.bincount(one[y == c], minlength=2)
        assert abs(counts[0] - counts[1]) <= 1, (c, counts)
    assert not np.array_equal(one, halves(y, np.random.default_rng(1)))


def test_contiguous_halves_keep_shots_in_a_row_together() -> None:
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    assert halves(y, None).tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1]


@pytest.mark.slow
@pytest.mark.skipif(not (GROCERY / "val.txt").is_file(), reason=f"no data set at {GROCERY}")
def test_a_run_scores_half_b_with_half_as_errors_as_corrections(tmp_path: Path) -> None:
    train = grocery_subset(tmp_path / "data", "train", CLASSES, 6)
    val = grocery_subset(tmp_path / "data", "val", CLASSES, None)
    n_val = len(val.read_text().splitlines())
    folds = evaluate_corrections(
        default_model_dir(), train, val, repeats=1, weights=(1, 3), progress=False,
        head=HeadConfig(kind="linear", max_epochs=15),
    )  # fmt: skip
    assert [(f.half, f.weight) for f in folds] == [(0, 1), (0, 3), (1, 1), (1, 3)]
    # The halves partition val; each scores the other half.
    assert folds[0].scored + folds[2].scored == n_val
    for f in folds:
        assert f.corrections >= f.corrected_classes
        assert (f.scored_in_corrected > 0) == (f.corrected_classes > 0)
        for value in (f.served_accuracy, f.baseline_accuracy, f.with_corrections_accuracy):
            assert 0.0 <= value <= 1.0
    # The same half's corrections at both weights, and the same baseline head.
    assert folds[0].corrections == folds[1].corrections
    assert folds[0].baseline_accuracy == folds[1].baseline_accuracy
    report = render_markdown(folds, command="vitrine corrections evaluate ...")
    assert report.count("\n| 0 | ") == len(folds), "one row per fold (repeat 0)"
    assert "head, train + corrections" in report
