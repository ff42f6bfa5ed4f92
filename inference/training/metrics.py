"""Classification metrics in numpy, from full probability vectors.

Top-1 and top-k accuracy, per-class precision / recall / F1 with their macro
and support-weighted averages, accuracy on coarse classes, the expected
calibration error (ECE) of the top-1 confidence, and the confusion matrix;
selective prediction (accuracy at a coverage, the risk-coverage curve, the
confidence threshold for a target accuracy) and the AUROC of telling known
from unknown images by a score.
Both the trainer (validation scores in the manifest) and the evaluation report
use :func:`score`, so the two give the same numbers; needs numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ClassMetrics",
    "accuracy_at_coverage",
    "auroc",
    "confusion_matrix",
    "expected_calibration_error",
    "per_class_metrics",
    "risk_coverage",
    "score",
    "selective_threshold",
    "topk_accuracy",
]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def topk_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k most probable (ties: lower index)."""
    if len(y_true) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class precision, recall, F1 and support (0 where undefined), from a confusion matrix."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true count
    predicted: np.ndarray  # predicted count


def per_class_metrics(cm: np.ndarray) -> ClassMetrics:
    """Precision, recall and F1 of each class; a 0/0 ratio counts as 0."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return ClassMetrics(precision, recall, f1, support, predicted)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """ECE: support-weighted mean |accuracy - confidence| over equal-width confidence bins.

    Bins are (0, 1/n], (1/n, 2/n], ... (Guo et al., 2017).
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    if len(confidence) == 0:
        return float("nan")
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def score(
    probs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    *,
    coarse_of_class: Sequence[str] = (),
    n_bins: int = 15,
) -> dict[str, Any]:
    """All summary metrics of one set of predictions, as a JSON-able dict.

    Macro averages are over the classes present in ``y_true`` (support > 0):
    a class absent from the evaluation data has no recall to average.
    ``coarse_of_class`` (the coarse class of every model class) adds coarse
    accuracy two ways: the coarse class of the top fine prediction (what the
    worker reports as the category) and the argmax of summed probabilities.
    """
    y_true = np.asarray(y_true, np.int64)
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    pcm = per_class_metrics(cm)
    present = pcm.support > 0
    weights = pcm.support[present] / max(1, pcm.support.sum())
    confidence = probs.max(axis=1)
    correct = y_pred == y_true
    out: dict[str, Any] = {
        "n_images": len(y_true),
        "n_classes_model": n_classes,
        "n_classes_present": int(present.sum()),
        "top1_accuracy": float(correct.mean()) if len(y_true) else float("nan"),
        "top5_accuracy": topk_accuracy(probs, y_true, 5),
        "macro_precision": float(pcm.precision[present].mean()),
        "macro_recall": float(pcm.recall[present].mean()),
        "macro_f1": float(pcm.f1[present].mean()),
        "weighted_precision": float((pcm.precision[present] * weights).sum()),
        "weighted_recall": float((pcm.recall[present] * weights).sum()),
        "weighted_f1": float((pcm.f1[present] * weights).sum()),
        "ece": expected_calibration_error(confidence, correct, n_bins),
        "ece_bins": n_bins,
        "mean_confidence": float(confidence.mean()) if len(y_true) else float("nan"),
        "nll": float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean()),
        # Selective prediction: accuracy on the most confident 80% / 90% of images.
        "accuracy_at_80_coverage": accuracy_at_coverage(confidence, correct, 0.8),
        "accuracy_at_90_coverage": accuracy_at_coverage(confidence, correct, 0.9),
    }
    if coarse_of_class:
        names = list(dict.fromkeys(coarse_of_class))
        index = {c: i for i, c in enumerate(names)}
        fine_to_coarse = np.array([index[c] for c in coarse_of_class], np.int64)
        coarse_true = fine_to_coarse[y_true]
        coarse_probs = np.zeros((len(y_true), len(names)))
        np.add.at(coarse_probs.T, fine_to_coarse, probs.T)
        out["n_coarse_classes_model"] = len(names)
        out["coarse_accuracy"] = float((fine_to_coarse[y_pred] == coarse_true).mean())
        out["coarse_accuracy_summed"] = float((coarse_probs.argmax(axis=1) == coarse_true).mean())
        out["coarse_top5_accuracy"] = topk_accuracy(coarse_probs, coarse_true, 5)
    return out


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy) when only the most confident images are kept, for every cut.

    Sorted by confidence, best first: keeping the top ``i`` images covers
    ``i / n`` and is right on ``correct[:i].mean()`` of them (El-Yaniv and Wiener, 2010).
    """
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    right = np.asarray(correct, np.float64)[order]
    kept = np.arange(1, len(right) + 1)
    return kept / max(1, len(right)), np.cumsum(right) / kept


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy on the ``coverage`` share of images with the highest confidence."""
    if len(confidence) == 0:
        return float("nan")
    cov, acc = risk_coverage(confidence, correct)
    return float(acc[max(0, int(np.ceil(coverage * len(cov))) - 1)])


def selective_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence threshold whose accepted images are at least ``target`` right.

    Accepting ``confidence >= threshold``; 1.0 (accept nothing) when no cut reaches
    the target, the smallest confidence when every image may be accepted.
    """
    conf = np.asarray(confidence, np.float64)
    if len(conf) == 0:
        return 1.0
    order = np.argsort(-conf, kind="stable")
    _, acc = risk_coverage(conf, correct)
    # A cut is only possible between distinct confidences: keep the last index of each run.
    sorted_conf = conf[order]
    last_of_value = np.append(sorted_conf[1:] != sorted_conf[:-1], True)
    ok = np.flatnonzero((acc >= target) & last_of_value)
    return float(sorted_conf[ok[-1]]) if len(ok) else 1.0


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher for known than unknown.

    The probability that a random known image scores above a random unknown one
    (ties count half): the Mann-Whitney U statistic over ``len(known) * len(unknown)``.
    """
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if len(known) == 0 or len(unknown) == 0:
        return float("nan")
    both = np.concatenate([known, unknown])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(both) + 1):
        if end == len(both) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    u = ranks[: len(known)].sum() - len(known) * (len(known) + 1) / 2
    return float(u / (len(known) * len(unknown)))
