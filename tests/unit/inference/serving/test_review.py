"""The review rule on hand-made probabilities: which flags route, which only inform."""

from __future__ import annotations

import numpy as np
import pytest

from inference.serving.engine import INFORMATIONAL_FLAGS, REVIEW_FLAGS
from inference.serving.review import (
    ReviewThresholds,
    group_matrix,
    level_scores,
    review_flags,
    review_masks,
)

# Four labels: two apples, a pear (produce) and a milk (dairy).
KINDS = ("Apple", "Apple", "Pear", "Milk")
CATEGORIES = ("produce", "produce", "produce", "dairy")
PROBS = np.array(
    [
        [0.48, 0.47, 0.03, 0.02],  # sure it is an apple, not which one
        [0.40, 0.05, 0.50, 0.05],  # apple or pear: a person must decide
        [0.97, 0.01, 0.01, 0.01],  # sure of the product
        [0.30, 0.20, 0.20, 0.30],  # sure of nothing but produce
    ]
)
THRESHOLDS = ReviewThresholds(kind_threshold=0.8, ood_threshold=0.5, product_threshold=0.9)


def _scores(ood: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    return level_scores(PROBS, group_matrix(KINDS)[1], group_matrix(CATEGORIES)[1], ood)


def test_the_flag_lists_are_apart_and_named_once() -> None:
    assert set(REVIEW_FLAGS) == {"uncertain_kind", "unknown_product", "low_confidence"}
    assert INFORMATIONAL_FLAGS == ("uncertain_product",)
    assert not set(REVIEW_FLAGS) & set(INFORMATIONAL_FLAGS)


def test_levels_sum_the_probabilities_of_their_labels() -> None:
    scores = _scores()
    np.testing.assert_allclose(scores.product, [0.48, 0.50, 0.97, 0.30])
    np.testing.assert_allclose(scores.kind, [0.95, 0.50, 0.98, 0.50])
    np.testing.assert_allclose(scores.category, [0.98, 0.95, 0.99, 0.70])


def test_a_sure_kind_with_an_unsure_product_is_informed_not_routed() -> None:
    flags = review_flags(_scores(np.array([0.9, 0.9, 0.9, 0.9])), THRESHOLDS)
    assert flags[0] == ("uncertain_product",)
    assert flags[1] == ("uncertain_kind", "uncertain_product")
    assert flags[2] == ()
    assert flags[3] == ("uncertain_kind", "uncertain_product")


def test_an_unfamiliar_image_is_unknown_whatever_its_probabilities() -> None:
    flags = review_flags(_scores(np.array([0.9, 0.9, 0.1, 0.9])), THRESHOLDS)
    assert flags[2] == ("unknown_product",)


def test_without_thresholds_or_ood_nothing_is_flagged() -> None:
    assert review_flags(_scores(), ReviewThresholds()) == [()] * 4
    masks = review_masks(_scores(), ReviewThresholds(ood_threshold=0.5))
    assert not masks["unknown_product"].any()  # no OOD output: no unknown_product


def test_the_older_product_level_rule_still_routes() -> None:
    flags = review_flags(_scores(), ReviewThresholds(confidence_threshold=0.9))
    assert [("low_confidence" in f) for f in flags] == [True, True, False, True]


@pytest.mark.parametrize("threshold", [0.95, 0.951])
def test_a_threshold_routes_what_is_strictly_under_it(threshold: float) -> None:
    masks = review_masks(_scores(), ReviewThresholds(kind_threshold=threshold))
    assert bool(masks["uncertain_kind"][0]) is (threshold > 0.95)
