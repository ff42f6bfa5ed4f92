"""Integrity decisions for photos this worker did not decode (cache hits), and across models.

(The checks' main scenarios are in ``tests/unit/streams/test_integrity.py``.)
"""

from __future__ import annotations

import asyncio

import numpy as np

from inference.serving.fingerprint import Fingerprint
from streams.worker.integrity import Checked, IntegrityChecker, Listing

PHOTO = Fingerprint(0x0F0F_0F0F_0F0F_0F0F, 0x1234, (), np.eye(8, dtype=np.float16)[0])
NEAR = Fingerprint(PHOTO.phash ^ 0b11, PHOTO.mirror, (), PHOTO.embedding)  # 2 bits off


def _check(checker: IntegrityChecker, *listings: Listing) -> list[Checked]:
    return asyncio.run(checker.check(list(listings)))


def test_a_cache_hit_is_checked_with_the_indexed_print_of_its_model_only() -> None:
    checker = IntegrityChecker()
    _check(checker, Listing("a-1", "A", "a" * 64, "v1", PHOTO))
    _check(checker, Listing("b-1", "B", "b" * 64, "v1", NEAR))
    # A hit of photo b under v1: its print is indexed, so it is checked, exactly and near.
    (same_model,) = _check(checker, Listing("c-1", "C", "b" * 64, "v1", None))
    assert same_model.duplicate_of is not None
    assert (same_model.duplicate_of.product_id, same_model.duplicate_of.match) == ("b-1", "exact")
    # Under another model the print is not this model's: the exact copy is still seen.
    (other_model,) = _check(checker, Listing("d-1", "D", "b" * 64, "v2", None))
    assert other_model.duplicate_of is not None
    assert other_model.duplicate_of.match == "exact"


def test_a_hit_without_any_print_is_flagged_only_as_an_exact_copy() -> None:
    checker = IntegrityChecker()
    (first,) = _check(checker, Listing("a-1", "A", "a" * 64, "v1", None))
    assert first.duplicate_of is None
    assert first.record is not None, "the first listing is recorded, print or not"
    (near,) = _check(checker, Listing("b-1", "B", "e" * 64, "v1", NEAR))
    assert near.duplicate_of is None, "nothing to compare with: photo a has no print"
    (copy,) = _check(checker, Listing("c-1", "C", "a" * 64, "v1", None))
    assert copy.duplicate_of is not None
    assert copy.duplicate_of.seller_id == "A"
