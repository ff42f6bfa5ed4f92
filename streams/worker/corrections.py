"""Reviewers' decisions (``label-corrections``) and how the worker applies them.

A decision about a listing's label (accept, relabel, not_a_product) gives its
product a corrected ``ProductLabelled`` on ``product-labels`` (:func:`corrected_record`,
emitted once, by the worker the decision's partition is assigned to), from which
the product view and enrichment take it like any label, and every later listing
of the same photo gets the reviewer's label (:meth:`PhotoCorrection.apply`), whatever
model is served. A dismissed duplicate pair is not flagged again. Each worker holds
the decisions it consults in :class:`CorrectionsView`, read whole from the
compacted topic at start (:class:`~streams.worker.follower.TopicFollower`).
Design: docs/ARCHITECTURE.md ("Reviewers' corrections").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from inference.serving.engine import INFORMATIONAL_FLAGS, REVIEW_FLAGS
from inference.serving.taxonomy import OTHER
from schemas import codec
from schemas.errors import SchemaError
from schemas.records import SCHEMA_VERSION, Label, LabelCorrection, ProductLabelled, Timings
from streams.worker.consumed import ConsumedRecord, Rejected
from streams.worker.imageresult import ImageResult

__all__ = [
    "CorrectionsView",
    "PhotoCorrection",
    "check_correction",
    "corrected_record",
    "decode_correction",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PhotoCorrection:
    """The label and category a reviewer gave a photo."""

    category: str
    label: str
    reviewer: str
    correction_id: str
    #: When the reviewer decided, epoch ms (the latest decision about a photo stands).
    decided_at_ms: int

    @classmethod
    def of(cls, correction: LabelCorrection) -> PhotoCorrection | None:
        """What a label decision says of its photo; None for a duplicate decision."""
        if correction.decision in ("duplicate_confirmed", "duplicate_dismissed"):
            return None
        category = correction.category or OTHER  # not_a_product: "other"
        return cls(
            category=category,
            label=correction.label or category,
            reviewer=correction.reviewer,
            correction_id=correction.event_id,
            decided_at_ms=int(correction.occurred_at.timestamp() * 1000),
        )

    def apply(self, result: ImageResult) -> ImageResult:
        """``result`` (any model's) with the reviewer's label and category.

        The review flags go, and what the model said of its label's certainty
        (``uncertain_product``): the photo has been placed. The search descriptor and
        the model's name stay (the descriptor is still the model's).
        """
        return msgspec.structs.replace(
            result,
            labels=((self.label, 1.0),),
            category=self.category,
            score=1.0,
            flags=tuple(f for f in result.flags if f not in (*REVIEW_FLAGS, *INFORMATIONAL_FLAGS)),
            corrected_by=self.reviewer,
            correction_id=self.correction_id,
        )


def decode_correction(value: bytes | None) -> LabelCorrection | None:
    """A label-corrections value as a record; None (logged) when it is not one."""
    if value is None:
        return None
    try:
        return codec.decode_label_correction(value)
    except SchemaError as exc:
        logger.warning("skipping a label-corrections value: %s (%s)", exc.code, exc.message)
        return None


def check_correction(rec: ConsumedRecord) -> LabelCorrection | Rejected | None:
    """A consumed decision, or why it is none (to dead-letter); None for a tombstone."""
    if not rec.value:
        return None
    try:
        return codec.decode_label_correction(rec.value)
    except SchemaError as exc:
        return Rejected(rec, exc.code, exc.message)


def corrected_record(correction: LabelCorrection, labelled_at: datetime) -> ProductLabelled | None:
    """The ``product-labels`` value a label decision gives its product; None for a pair."""
    fix = PhotoCorrection.of(correction)
    if fix is None:
        return None
    return ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=correction.event_id,
        occurred_at=correction.occurred_at,
        product_id=correction.product_id,
        labels=(Label(label=fix.label, score=1.0),),
        category=fix.category,
        category_score=1.0,
        model_name=correction.model_name,
        model_version=correction.model_version,
        image_sha256=correction.image_sha256,
        cached=True,
        timings=Timings(decode_ms=0.0, inference_ms=0.0, end_to_end_ms=0.0),
        labelled_at=labelled_at,
        corrected_by=correction.reviewer,
        correction_id=correction.event_id,
    )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class CorrectionsView:
    """Every worker's view of ``label-corrections``: photos' corrections, dismissed pairs.

    Fed by a :class:`~streams.worker.follower.TopicFollower` in partition order;
    a tombstone withdraws the decision of its key.
    """

    def __init__(self) -> None:
        #: Key -> (photo, its correction) of each product's latest label decision.
        self._labels: dict[str, tuple[str, PhotoCorrection]] = {}
        #: Photo -> the latest correction of it (of whichever product).
        self._photos: dict[str, PhotoCorrection] = {}
        #: Photo -> the keys whose label decisions are about it.
        self._photo_keys: dict[str, set[str]] = {}
        #: Key -> the (unordered) pair of each pair decision that is a dismissal.
        self._dismissals: dict[str, tuple[str, str]] = {}
        #: Pair -> how many keys dismiss it (both listings may have dismissed the other).
        self._dismissed: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._labels) + len(self._dismissals)

    def apply(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Take in label-corrections records; malformed ones are skipped."""
        for raw_key, value in records:
            if raw_key is None:
                continue
            key = raw_key.decode("utf-8", "replace")
            self._forget(key)
            correction = decode_correction(value)
            if correction is None:
                continue
            fix = PhotoCorrection.of(correction)
            if fix is not None:
                self._labels[key] = (correction.image_sha256, fix)
                self._photo_keys.setdefault(correction.image_sha256, set()).add(key)
                now = self._photos.get(correction.image_sha256)
                if now is None or now.decided_at_ms <= fix.decided_at_ms:
                    self._photos[correction.image_sha256] = fix
            elif correction.decision == "duplicate_dismissed":
                assert correction.duplicate_of is not None
                pair = _pair(correction.product_id, correction.duplicate_of)
                self._dismissals[key] = pair
                self._dismissed[pair] = self._dismissed.get(pair, 0) + 1

    def _forget(self, key: str) -> None:
        """Withdraw what the key's earlier record said (replaced or tombstoned)."""
        if (label := self._labels.pop(key, None)) is not None:
            sha, fix = label
            keys = self._photo_keys[sha]
            keys.discard(key)
            if not keys:
                del self._photo_keys[sha]
            if self._photos.get(sha) == fix:
                del self._photos[sha]
                # Another product's correction of the same photo, if any, stands.
                rest = [self._labels[k][1] for k in keys]
                if rest:
                    self._photos[sha] = max(rest, key=lambda f: f.decided_at_ms)
        if (pair := self._dismissals.pop(key, None)) is not None:
            left = self._dismissed[pair] - 1
            if left:
                self._dismissed[pair] = left
            else:
                del self._dismissed[pair]

    def photos(self) -> dict[str, PhotoCorrection]:
        """Every corrected photo (sha256) and the latest correction of it."""
        return dict(self._photos)

    def for_photo(self, image_sha256: str) -> PhotoCorrection | None:
        """The reviewer's label of a photo, if a decision gave it one."""
        return self._photos.get(image_sha256)

    def dismissed(self, product_id: str, other_product_id: str) -> bool:
        """True when a reviewer dismissed the two listings as duplicates (either way)."""
        return _pair(product_id, other_product_id) in self._dismissed
