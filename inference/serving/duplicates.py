"""Near-duplicate decisions: whether one product photo is a copy of another.

One rule, used by the worker (:mod:`streams.worker.integrity`) and by the offline
evaluation (``vitrine evaluate-duplicates``), so the measured rates are the
worker's: a photo is a near duplicate of an earlier one when its hash (or its
mirror's) is within ``max_hamming`` bits of one of the earlier photo's indexed
hashes (whole photo or a 90% crop) **and** the model's embeddings agree
(cosine at least ``min_cosine``). The hash finds candidates; the embedding
rejects the rare different photo whose hash happens to be close (another shot
of the same packaging on the same shelf). A copy disguised past the hash (a
border, a tight crop, a rotation) is found by its embedding instead
(:meth:`~inference.serving.duplicate_index.FingerprintIndex.similar`) and
accepted when enough of its local features map onto the original's by one
similarity transform (:mod:`inference.serving.keypoints`).

Candidates are found by multi-index hashing: each indexed 64-bit hash is cut
into :data:`BANDS` bands of 16 bits, and a lookup reads the index entries that
agree exactly on any band of the query's hash or its mirror's (two hashes fewer
than four bits apart always share a band; re-encoded, resized and mirrored
copies differ by at most 2). The rates this gives, per kind of copy, are
``vitrine evaluate-duplicates``'s (docs/INTEGRITY.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from inference.serving.fingerprint import Fingerprint, band_values, hamming
from inference.serving.keypoints import verify

__all__ = [
    "BANDS",
    "DuplicateRule",
    "NearMatch",
    "found_by_bands",
    "index_bands",
    "lookup_bands",
]

logger = logging.getLogger(__name__)

BANDS = 4


@dataclass(frozen=True, slots=True)
class NearMatch:
    """Why a photo was judged a copy of another: hash distance, embedding cosine, inliers."""

    hamming: int
    cosine: float | None
    #: Keypoints that map onto the original's by one similarity transform (None:
    #: not verified, a photo without local features).
    inliers: int | None = None
    #: Which test accepted it: ``hash`` (hash and embedding) or ``verified`` (local features).
    step: str = "hash"


@dataclass(frozen=True, slots=True)
class DuplicateRule:
    """The near-duplicate thresholds (settings ``near_duplicate_max_hamming``/``_min_cosine``)."""

    max_hamming: int = 8
    min_cosine: float = 0.9
    #: Inliers that make a copy by local features alone (0: no verification).
    min_inliers: int = 64
    #: Inliers that make a photo with a near hash a copy whatever the embeddings'
    #: cosine (a recoloured or heavily re-compressed copy moves the embedding; 0: off).
    min_hash_inliers: int = 25

    def match(self, photo: Fingerprint, original: Fingerprint) -> NearMatch | None:
        """The evidence that ``photo`` copies ``original``, or None when it does not.

        A copy by the hash (near hash and, when both have embeddings, a cosine
        of at least ``min_cosine``), or by its local features: at least
        ``min_inliers`` keypoints map onto the original's by one similarity
        transform (:func:`~inference.serving.keypoints.verify`), or
        ``min_hash_inliers`` with a near hash. The inliers are
        the evidence of either, when both photos have features.
        """
        distance = photo.distance(original)
        cosine = photo.cosine(original)
        shown = None if cosine is None else round(cosine, 4)
        inliers = None
        if photo.features is not None and original.features is not None:
            inliers = verify(photo.features, original.features).inliers
        if distance <= self.max_hamming and (cosine is None or cosine >= self.min_cosine):
            return NearMatch(distance, shown, inliers, "hash")
        if inliers is None:
            return None
        near_hash = distance <= self.max_hamming and 0 < self.min_hash_inliers <= inliers
        if near_hash or 0 < self.min_inliers <= inliers:
            return NearMatch(distance, shown, inliers, "verified")
        return None

    @property
    def candidate_hamming(self) -> int:
        """How near a band lookup's hit must be to become a candidate: twice ``max_hamming``.

        The hit is the indexed hash that shares a band with the query, not
        always the original's nearest (which :meth:`match` then measures), so
        candidates are taken wider than the rule.
        """
        return 2 * self.max_hamming


def lookup_bands(photo: Fingerprint) -> set[tuple[int, int]]:
    """(band index, band value) pairs to look up for ``photo``: its hash's and its mirror's."""
    return {
        (i, v) for h in (photo.phash, photo.mirror) for i, v in enumerate(band_values(h, BANDS))
    }


def found_by_bands(photo: Fingerprint, original: Fingerprint, rule: DuplicateRule) -> bool:
    """Whether a band lookup for ``photo`` makes ``original`` a candidate, as the worker's does.

    One of ``original``'s indexed hashes shares a band with ``photo``'s hash or
    its mirror's and is within :attr:`DuplicateRule.candidate_hamming` bits of it
    (:mod:`streams.worker.integrity`).
    """
    queries = (photo.phash, photo.mirror)
    bands = [band_values(q, BANDS) for q in queries]
    for h in original.indexed:
        hb = band_values(h, BANDS)
        for q, qb in zip(queries, bands, strict=True):
            if (
                any(a == b for a, b in zip(qb, hb, strict=True))
                and hamming(q, h) <= rule.candidate_hamming
            ):
                return True
    return False


def index_bands(photo: Fingerprint) -> dict[tuple[int, int], set[int]]:
    """(band index, band value) -> the indexed hashes of ``photo`` that fall there."""
    out: dict[tuple[int, int], set[int]] = {}
    for h in photo.indexed:
        for i, v in enumerate(band_values(h, BANDS)):
            out.setdefault((i, v), set()).add(h)
    return out
