"""Evaluation metrics against a confusion matrix computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.training.metrics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_metrics,
    score,
    topk_accuracy,
)

# Three classes, ten images. By hand (rows = true, columns = predicted):
#
#            pred 0  pred 1  pred 2   support
#   true 0     3       1       0        4
#   true 1     1       2       1        4
#   true 2     0       0       2        2
#   predicted  4       3       3
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 0, 1, 1, 2, 2, 2])
CM = np.array([[3, 1, 0], [1, 2, 1], [0, 0, 2]])
# precision = tp / predicted: 3/4, 2/3, 2/3; recall = tp / support: 3/4, 2/4, 2/2
PRECISION = np.array([3 / 4, 2 / 3, 2 / 3])
RECALL = np.array([3 / 4, 1 / 2, 1.0])
F1 = 2 * PRECISION * RECALL / (PRECISION + RECALL)  # 0.75, 0.571428..., 0.8


def _probs_for(y_pred: np.ndarray, confidence: np.ndarray, n: int = 3) -> np.ndarray:
    """Rows whose argmax is y_pred with that probability, the rest spread evenly."""
    probs = np.tile(((1 - confidence) / (n - 1))[:, None], (1, n))
    probs[np.arange(len(y_pred)), y_pred] = confidence
    return probs


def test_confusion_matrix_matches_hand_count() -> None:
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == CM.tolist()


def test_per_class_precision_recall_f1_match_hand_computation() -> None:
    m = per_class_metrics(CM)
    np.testing.assert_allclose(m.precision, PRECISION)
    np.testing.assert_allclose(m.recall, RECALL)
    np.testing.assert_allclose(m.f1, [0.75, 4 / 7, 0.8])
    assert m.support.tolist() == [4, 4, 2]
    assert m.predicted.tolist() == [4, 3, 3]


def test_score_summary_matches_hand_computation() -> None:
    probs = _probs_for(Y_PRED, np.full(10, 0.6))
    s = score(probs, Y_TRUE, ["a", "b", "c"])
    assert s["top1_accuracy"] == pytest.approx(7 / 10)
    assert s["macro_precision"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert s["macro_recall"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert s["macro_f1"] == pytest.approx((0.75 + 4 / 7 + 0.8) / 3)
    # Weighted by support 4, 4, 2 of 10.
    assert s["weighted_precision"] == pytest.approx(0.4 * 3 / 4 + 0.4 * 2 / 3 + 0.2 * 2 / 3)
    assert s["weighted_recall"] == pytest.approx(0.4 * 3 / 4 + 0.4 * 1 / 2 + 0.2 * 1)
    assert s["weighted_f1"] == pytest.approx(0.4 * 0.75 + 0.4 * 4 / 7 + 0.2 * 0.8)
    # Every image at confidence 0.6, 70% right: one bin, |0.7 - 0.6|.
    assert s["ece"] == pytest.approx(0.1)
    assert s["top5_accuracy"] == 1.0  # three classes: top-5 holds them all


def test_macro_average_skips_classes_absent_from_the_data() -> None:
    # Class 3 is never the truth; one image is wrongly predicted as class 3.
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 3, 1, 1])
    probs = _probs_for(y_pred, np.full(4, 0.9), n=4)
    s = score(probs, y_true, ["a", "b", "c", "d"])
    assert s["n_classes_present"] == 2
    # class 0: p=1, r=1/2, f1=2/3; class 1: p=1, r=1, f1=1
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["macro_precision"] == pytest.approx(1.0)


def test_topk_accuracy_by_hand() -> None:
    probs = np.array(
        [
            [0.5, 0.3, 0.2, 0.0],  # true 1: second -> top-2 hit, top-1 miss
            [0.1, 0.2, 0.3, 0.4],  # true 0: last -> miss until k=4
            [0.7, 0.1, 0.1, 0.1],  # true 0: first
        ]
    )
    y = np.array([1, 0, 0])
    assert topk_accuracy(probs, y, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(probs, y, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(probs, y, 3) == pytest.approx(2 / 3)
    assert topk_accuracy(probs, y, 4) == pytest.approx(1.0)


def test_expected_calibration_error_by_hand() -> None:
    # Bin (0.8, 0.8667]: confidences 0.85, 0.85, right 1 of 2 -> |0.5 - 0.85| = 0.35, weight 2/5.
    # Bin (0.3333, 0.4]: 0.4, 0.4, 0.4, right 2 of 3 -> |0.6667 - 0.4| = 0.2667, weight 3/5.
    confidence = np.array([0.85, 0.85, 0.4, 0.4, 0.4])
    correct = np.array([1, 0, 1, 1, 0])
    expected = 2 / 5 * 0.35 + 3 / 5 * abs(2 / 3 - 0.4)
    assert expected_calibration_error(confidence, correct, 15) == pytest.approx(expected)
    assert expected_calibration_error(np.ones(3), np.ones(3)) == 0.0
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_coarse_accuracy_by_hand() -> None:
    # Classes 0 and 1 are both "fruit", class 2 is "milk".
    coarse = ["fruit", "fruit", "milk"]
    probs = np.array(
        [
            [0.2, 0.5, 0.3],  # true 0 (fruit): top fine 1 -> fruit right; summed fruit 0.7 right
            [0.45, 0.0, 0.55],  # true 1 (fruit): top fine 2 -> milk wrong; summed fruit 0.45 wrong
            [0.3, 0.3, 0.4],  # true 2 (milk): top fine 2 right; summed fruit 0.6 -> wrong
        ]
    )
    s = score(probs, np.array([0, 1, 2]), ["a", "b", "c"], coarse_of_class=coarse)
    assert s["coarse_accuracy"] == pytest.approx(2 / 3)
    assert s["coarse_accuracy_summed"] == pytest.approx(1 / 3)
    assert s["n_coarse_classes_model"] == 2
