"""The review rule: which labelled photos a person must look at, and why.

A product photo is uncertain at three levels, nested: its product (a Granny Smith),
its kind (an apple: the labels the manifest's ``coarse`` list puts together) and its
category (produce). The model may hesitate between two apples and still be sure it
sees an apple, and kinds are what analytics and review lean on, so the rule routes a
photo to review only where a person must decide: when the top kind's probability
mass is under ``kind_threshold`` (``uncertain_kind``) or the image looks like nothing
the model was trained on (OOD score under ``ood_threshold``: ``unknown_product``).
Hesitation between products of a sure kind is reported (``uncertain_product``, top
product probability under ``product_threshold``) but routes nothing.

``low_confidence`` is the rule of models fitted before kinds were (a manifest or a
``VITRINE_CONFIDENCE_THRESHOLD`` with ``confidence_threshold``: top product
probability under it routes). It still routes, so older manifests behave as they did.

The flags' names live here; :mod:`inference.serving.engine` re-exports them. One
implementation serves the engine and ``vitrine evaluate``. Thresholds and how they
were fitted: docs/MODEL.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "INFORMATIONAL_FLAGS",
    "REVIEW_FLAGS",
    "LevelScores",
    "ReviewThresholds",
    "group_matrix",
    "level_scores",
    "review_flags",
    "review_masks",
]

#: Flags that send a photo to review: the model cannot place it.
REVIEW_FLAGS = ("uncertain_kind", "unknown_product", "low_confidence")
#: Flags that say something about the label and route nothing.
INFORMATIONAL_FLAGS = ("uncertain_product",)

FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True)
class ReviewThresholds:
    """The thresholds of the rule; None switches a flag off."""

    #: Top kind's probability mass under it -> ``uncertain_kind`` (routes).
    kind_threshold: float | None = None
    #: OOD score under it -> ``unknown_product`` (routes).
    ood_threshold: float | None = None
    #: Top product probability under it -> ``uncertain_product`` (informational).
    product_threshold: float | None = None
    #: Older rule: top product probability under it -> ``low_confidence`` (routes).
    confidence_threshold: float | None = None


@dataclass(frozen=True)
class LevelScores:
    """Per image: the top product's probability, the top kind's and top category's mass."""

    product: FloatArray
    kind: FloatArray
    category: FloatArray
    ood: FloatArray | None = None


def group_matrix(groups: Sequence[str]) -> tuple[tuple[str, ...], npt.NDArray[np.float32]]:
    """The distinct groups (first-seen order) and the (labels, groups) one-hot summing into them."""
    distinct = tuple(dict.fromkeys(groups))
    index = {g: i for i, g in enumerate(distinct)}
    one_hot = np.zeros((len(groups), len(distinct)), dtype=np.float32)
    one_hot[np.arange(len(groups)), [index[g] for g in groups]] = 1
    return distinct, one_hot


def level_scores(
    probabilities: FloatArray,
    kind_matrix: npt.NDArray[np.float32],
    category_matrix: npt.NDArray[np.float32],
    ood: FloatArray | None = None,
) -> LevelScores:
    """The top mass at each level for a batch of label probabilities."""
    return LevelScores(
        product=probabilities.max(axis=1),
        kind=(probabilities @ kind_matrix).max(axis=1),
        category=(probabilities @ category_matrix).max(axis=1),
        ood=ood,
    )


def _below(values: FloatArray | None, threshold: float | None, n: int) -> npt.NDArray[np.bool_]:
    if values is None or threshold is None:
        return np.zeros(n, dtype=bool)
    return np.asarray(values < threshold, dtype=bool)


def review_masks(
    scores: LevelScores, thresholds: ReviewThresholds
) -> dict[str, npt.NDArray[np.bool_]]:
    """Each flag's boolean mask over the images, every name of both flag lists present."""
    n = len(scores.product)
    return {
        "uncertain_kind": _below(scores.kind, thresholds.kind_threshold, n),
        "unknown_product": _below(scores.ood, thresholds.ood_threshold, n),
        "low_confidence": _below(scores.product, thresholds.confidence_threshold, n),
        "uncertain_product": _below(scores.product, thresholds.product_threshold, n),
    }


def review_flags(scores: LevelScores, thresholds: ReviewThresholds) -> list[tuple[str, ...]]:
    """The flags of each image, routing ones first, in the lists' order."""
    masks = review_masks(scores, thresholds)
    names = (*REVIEW_FLAGS, *INFORMATIONAL_FLAGS)
    columns = np.stack([masks[name] for name in names], axis=1)
    return [tuple(name for name, on in zip(names, row, strict=True) if on) for row in columns]
