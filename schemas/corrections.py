"""The key of a label-corrections record, shared by the producer and consumers.

A decision about a listing's label (accept, relabel, not_a_product) is keyed
``product_id``, so that compaction keeps each product's latest one; a decision
about a duplicate pair is keyed ``<product_id>|<duplicate_of>``, so that every
pair keeps its own (a product dismissed as a copy of two listings keeps both).
Read the value, not the key: product ids may contain ``|``.
"""

from __future__ import annotations

from schemas.records import LabelCorrection

__all__ = ["correction_key"]


def correction_key(correction: LabelCorrection) -> str:
    """The record's key on the label-corrections topic."""
    if correction.duplicate_of is None:
        return correction.product_id
    return f"{correction.product_id}|{correction.duplicate_of}"
