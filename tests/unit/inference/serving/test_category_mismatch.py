"""The category-mismatch rule (the duplicate checks run on real Redis: tests/integration)."""

from __future__ import annotations

from inference.serving.taxonomy import category_mismatch


def test_category_mismatch_needs_a_confident_other_category() -> None:
    assert category_mismatch("dairy", "produce", 0.97, (), 0.9)
    assert not category_mismatch("Produce ", "produce", 0.97, (), 0.9), "case and spaces"
    assert not category_mismatch("dairy", "produce", 0.6, (), 0.9), "not confident"
    assert not category_mismatch(None, "produce", 0.97, (), 0.9), "nothing declared"
    assert not category_mismatch("dairy", "produce", 0.97, ("unknown_product",), 0.9)
