"""Fit and measure the review policy: how many photos go to people, how right the rest are.

The rule is the engine's (:mod:`inference.serving.review`); this module picks its
thresholds. On the model outputs of the graph the worker serves, it searches every
pair (kind threshold, OOD threshold) for the least routed share whose kept photos
are right often enough at the kind and category levels, and whose non-product photos
are routed often enough. When no pair meets those targets within the routing budget
(``max_routed``), people cannot staff the accurate policy, so it takes the pair,
within the budget, that keeps the kind level most accurate, and says which target it
misses. The product threshold (informational) is then the lowest top-1 probability
above which the kept photos are right at the product level as often as asked.

:func:`kfold` measures that fit honestly: thresholds picked on k-1 folds, routing and
accuracy measured on the held-out one. What was measured: docs/MODEL.md (review policy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.serving.review import LevelScores, ReviewThresholds, group_matrix

__all__ = [
    "LEVELS",
    "FitResult",
    "LabelledOutputs",
    "NonProducts",
    "Targets",
    "fit_thresholds",
    "kfold",
    "labelled_outputs",
    "policy_rates",
    "trade_off_curve",
]

logger = logging.getLogger(__name__)

#: The levels a label can be right at, finest first.
LEVELS = ("product", "kind", "category")

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True)
class Targets:
    """What the policy must achieve (issue #22): routed share, accuracy of what is kept."""

    max_routed: float = 0.15
    kind_accuracy: float = 0.98
    category_accuracy: float = 0.995
    non_products_routed: float = 0.90
    #: Informational: top-1 probability above which kept photos are this right.
    product_accuracy: float = 0.95


@dataclass(frozen=True)
class LabelledOutputs:
    """Per photo: the top mass at each level, OOD score, and whether each level is right."""

    product: FloatArray
    kind: FloatArray
    category: FloatArray
    ood: FloatArray
    correct: dict[str, BoolArray]  # level -> top-1 right at that level

    def __len__(self) -> int:
        return len(self.product)

    def subset(self, index: npt.NDArray[np.intp]) -> LabelledOutputs:
        """The photos at ``index``."""
        return LabelledOutputs(
            self.product[index],
            self.kind[index],
            self.category[index],
            self.ood[index],
            {k: v[index] for k, v in self.correct.items()},
        )


@dataclass(frozen=True)
class NonProducts:
    """Per image that is no product: the top kind's mass and the OOD score."""

    kind: FloatArray
    ood: FloatArray


@dataclass(frozen=True)
class FitResult:
    """Fitted thresholds and what they give on the photos they were fitted on."""

    thresholds: ReviewThresholds
    meets_targets: bool  # within the budget, every accuracy and non-product target met
    routed: float
    accuracy_of_kept: dict[str, float]
    non_products_routed: float | None
    missed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "thresholds": asdict(self.thresholds),
            "meets_targets": self.meets_targets,
            "routed": self.routed,
            "accuracy_of_kept": self.accuracy_of_kept,
            "non_products_routed": self.non_products_routed,
            "missed": self.missed,
        }


def labelled_outputs(
    scores: LevelScores,
    probabilities: FloatArray,
    y_true: npt.NDArray[np.integer],
    kinds: Sequence[str],
    categories: Sequence[str],
) -> LabelledOutputs:
    """Per-level scores (``Engine.review_scores``) with whether each level's top-1 is right.

    ``kinds`` and ``categories`` give each label's kind and category; a level's
    prediction is the group with the largest summed probability.
    """
    correct = {"product": probabilities.argmax(axis=1) == y_true}
    for level, groups in (("kind", kinds), ("category", categories)):
        _, matrix = group_matrix(groups)
        truth = matrix.argmax(axis=1)[y_true]
        correct[level] = (probabilities @ matrix).argmax(axis=1) == truth
    ood = scores.ood if scores.ood is not None else np.ones(len(y_true))
    return LabelledOutputs(scores.product, scores.kind, scores.category, ood, correct)


def _candidates(values: FloatArray, n: int) -> FloatArray:
    """Thresholds worth trying: each observed value (quantiles past ``n``), one above the last.

    A threshold routes the photos under it: the smallest observed value routes none.
    """
    unique = np.unique(values)
    if len(unique) > n:
        unique = np.unique(np.quantile(values, np.linspace(0, 1, n)))
    return np.concatenate([unique, [np.nextafter(unique[-1], np.inf)]])


def _grid(
    data: LabelledOutputs,
    kind_thresholds: FloatArray,
    ood_thresholds: FloatArray,
    non_products: NonProducts | None,
) -> dict[str, FloatArray]:
    """Routed share, kept count and kept accuracy per level, over the (ood, kind) grid.

    Exact for every kind threshold: per OOD threshold, suffix sums over the photos
    sorted by kind mass give what each kind threshold keeps.
    """
    order = np.argsort(data.kind, kind="stable")
    first_kept = np.searchsorted(data.kind[order], kind_thresholds, side="left")
    shape = (len(ood_thresholds), len(kind_thresholds))
    out: dict[str, FloatArray] = {"routed": np.zeros(shape), "kept": np.zeros(shape)}
    for level in LEVELS:
        out[level] = np.zeros(shape)

    def suffix(values: BoolArray) -> npt.NDArray[np.int64]:
        return np.concatenate([np.cumsum(values[::-1])[::-1], [0]])

    for i, t_ood in enumerate(ood_thresholds):
        familiar = (data.ood >= t_ood)[order]
        n_kept = suffix(familiar)[first_kept].astype(np.float64)
        out["kept"][i] = n_kept
        out["routed"][i] = 1 - n_kept / max(len(data), 1)
        for level in LEVELS:
            right = suffix(familiar & data.correct[level][order])[first_kept]
            out[level][i] = np.divide(
                right, n_kept, out=np.full(len(n_kept), np.nan), where=n_kept > 0
            )
    if non_products is not None and len(non_products.kind):
        by_ood = non_products.ood[None, None, :] < ood_thresholds[:, None, None]
        by_kind = non_products.kind[None, None, :] < kind_thresholds[None, :, None]
        out["non_products"] = (by_ood | by_kind).mean(axis=2)
    return out


def _product_threshold(data: LabelledOutputs, kept: BoolArray, target: float) -> float:
    """The lowest top-1 probability above which kept photos are ``target`` right at product."""
    p, right = data.product[kept], data.correct["product"][kept]
    if not len(p):
        return 1.0
    order = np.argsort(-p, kind="stable")
    accuracy = np.cumsum(right[order]) / np.arange(1, len(p) + 1)
    ok = np.flatnonzero(accuracy >= target)
    return float(p[order][ok[-1]]) if len(ok) else 1.0


def fit_thresholds(
    data: LabelledOutputs,
    targets: Targets,
    *,
    non_products: NonProducts | None = None,
    grid_size: int = 400,
) -> FitResult:
    """The (kind, OOD) thresholds with the least routing that meet ``targets``; see the module.

    Every observed kind mass is tried; the OOD score at ``grid_size`` quantiles.
    """
    kinds = _candidates(data.kind, 1_000_000)  # exact: every observed kind mass
    oods = _candidates(data.ood, grid_size)
    g = _grid(data, kinds, oods, non_products)
    with np.errstate(invalid="ignore"):
        accurate = (g["kind"] >= targets.kind_accuracy) & (
            g["category"] >= targets.category_accuracy
        )
    accurate &= g["kept"] > 0
    budget = g["routed"] <= targets.max_routed + 1e-12
    if "non_products" in g:
        catches = g["non_products"] >= targets.non_products_routed
        budget = budget & catches if (budget & catches).any() else budget
    feasible = accurate & budget
    if feasible.any():
        # Least routing; among ties the highest kind accuracy.
        score = np.where(feasible, -g["routed"] * 1e6 + np.nan_to_num(g["kind"]), -np.inf)
    else:
        # Within the budget, the most accurate kind level; among ties the least routing.
        score = np.where(budget, np.nan_to_num(g["kind"]) * 1e6 - g["routed"], -np.inf)
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    kind_t, ood_t = float(kinds[j]), float(oods[i])
    kept = (data.kind >= kind_t) & (data.ood >= ood_t)
    thresholds = ReviewThresholds(
        kind_threshold=kind_t,
        ood_threshold=ood_t,
        product_threshold=_product_threshold(data, kept, targets.product_accuracy),
    )
    accuracy = {level: float(g[level][i, j]) for level in LEVELS}
    caught = float(g["non_products"][i, j]) if "non_products" in g else None
    missed = _missed(float(g["routed"][i, j]), accuracy, caught, targets)
    return FitResult(thresholds, not missed, float(g["routed"][i, j]), accuracy, caught, missed)


def _missed(
    routed: float, accuracy: dict[str, float], non_products: float | None, targets: Targets
) -> list[str]:
    missed = []
    if routed > targets.max_routed + 1e-12:
        missed.append(f"routed {routed:.1%} > {targets.max_routed:.0%}")
    for level, target in (("kind", targets.kind_accuracy), ("category", targets.category_accuracy)):
        if not accuracy[level] >= target:
            missed.append(f"{level} accuracy of kept {accuracy[level]:.1%} < {target:.1%}")
    if non_products is not None and non_products < targets.non_products_routed:
        missed.append(f"non-products routed {non_products:.0%} < {targets.non_products_routed:.0%}")
    return missed


def policy_rates(
    data: LabelledOutputs, thresholds: ReviewThresholds, non_products: NonProducts | None = None
) -> dict[str, Any]:
    """Routed share and accuracy of the kept photos per level, under ``thresholds``.

    Only the kind and OOD rules are applied: the ones :func:`fit_thresholds` fits.
    """
    kept = np.ones(len(data), bool)
    if thresholds.kind_threshold is not None:
        kept &= data.kind >= thresholds.kind_threshold
    if thresholds.ood_threshold is not None:
        kept &= data.ood >= thresholds.ood_threshold
    out: dict[str, Any] = {
        "routed": float(1 - kept.mean()) if len(data) else float("nan"),
        "accuracy_of_kept": {
            level: float(data.correct[level][kept].mean()) if kept.any() else float("nan")
            for level in LEVELS
        },
    }
    if non_products is not None and len(non_products.kind):
        caught = np.zeros(len(non_products.kind), bool)
        if thresholds.kind_threshold is not None:
            caught |= non_products.kind < thresholds.kind_threshold
        if thresholds.ood_threshold is not None:
            caught |= non_products.ood < thresholds.ood_threshold
        out["non_products_routed"] = float(caught.mean())
    return out


def kfold(
    data: LabelledOutputs,
    targets: Targets,
    *,
    folds: int = 5,
    seed: int = 0,
    non_products: NonProducts | None = None,
    strata: npt.NDArray[np.integer] | None = None,
    also_on: BoolArray | None = None,
) -> dict[str, Any]:
    """Fit on k-1 folds, measure on the held-out one; per fold and mean +- std.

    Folds are drawn within each ``strata`` value (the class), so each holds every
    class alike. ``also_on`` marks photos (those the network never trained on) whose
    held-out share is measured apart too, under ``held_out_subset``.
    """
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(data), np.int64)
    groups = strata if strata is not None else np.zeros(len(data), np.int64)
    for g in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == g))
        assignment[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    per_fold = []
    for k in range(folds):
        fit_on = np.flatnonzero(assignment != k)
        held = np.flatnonzero(assignment == k)
        fit = fit_thresholds(data.subset(fit_on), targets, non_products=non_products)
        measured = policy_rates(data.subset(held), fit.thresholds, non_products)
        row = {"fold": k, "images": len(held), "fit": fit.to_dict(), **measured}
        if also_on is not None:
            subset = held[also_on[held]]
            row["held_out_subset"] = {
                "images": len(subset),
                **policy_rates(data.subset(subset), fit.thresholds),
            }
        per_fold.append(row)

    def spread(values: Sequence[float]) -> dict[str, float]:
        array = np.asarray(values, np.float64)
        return {"mean": float(np.nanmean(array)), "std": float(np.nanstd(array)),
                "min": float(np.nanmin(array)), "max": float(np.nanmax(array))}  # fmt: skip

    def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "routed": spread([r["routed"] for r in rows]),
            "accuracy_of_kept": {
                level: spread([r["accuracy_of_kept"][level] for r in rows]) for level in LEVELS
            },
        }

    summary = summarise(per_fold)
    if non_products is not None and len(non_products.kind):
        summary["non_products_routed"] = spread([f["non_products_routed"] for f in per_fold])
    if also_on is not None:
        summary["held_out_subset"] = summarise([f["held_out_subset"] for f in per_fold])
    return {"folds": folds, "seed": seed, "per_fold": per_fold, "summary": summary}


def trade_off_curve(
    data: LabelledOutputs, ood_threshold: float | None, points: int = 101
) -> list[dict[str, float]]:
    """Routed share against kept accuracy per level, sweeping the kind threshold."""
    base = data.ood >= ood_threshold if ood_threshold is not None else np.ones(len(data), bool)
    out = []
    for t in np.unique(np.concatenate([[0.0], np.quantile(data.kind, np.linspace(0, 1, points))])):
        kept = base & (data.kind >= t)
        row = {"kind_threshold": float(t), "routed": float(1 - kept.mean())}
        for level in LEVELS:
            row[level] = float(data.correct[level][kept].mean()) if kept.any() else float("nan")
        out.append(row)
    return out
