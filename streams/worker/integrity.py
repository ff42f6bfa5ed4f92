"""Integrity checks of listings (brand protection): duplicate photos across sellers.

A listing is flagged ``duplicate_image`` when another seller listed the same
image file before, and ``near_duplicate`` when another seller listed the same
photo re-encoded, resized, cropped, mirrored or disguised (a border, a tight
crop, a rotation, a watermark: the rule, :mod:`inference.serving.duplicates`).
Each seller's first listing of a photo is recorded on the compacted
``listing-fingerprints`` topic, which every worker reads
whole into an in-process :class:`~inference.serving.duplicate_index.FingerprintIndex`
(:class:`IntegrityView`); the checks wait until it has caught up. Listings without
a ``seller_id`` are neither checked nor remembered, and two listings a reviewer
dismissed as duplicates are not flagged again (:mod:`streams.worker.corrections`).
Candidates come from the index's hash bands and its embedding nearest
neighbours; judging them may match local features (about 0.4 ms a candidate),
so it runs in a thread, not on the event loop, one listing at a time and in
input order. Design, limits and measurements: docs/INTEGRITY.md.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from inference.serving.duplicate_index import FingerprintIndex, Owner, StoredPrint
from inference.serving.duplicates import DuplicateRule
from inference.serving.fingerprint import Fingerprint
from inference.serving.keypoints import LocalFeatures
from schemas import codec
from schemas.errors import SchemaError
from schemas.records import SCHEMA_VERSION, DuplicateOf, ListingFingerprint, PhotoFingerprint
from streams.settings import Settings
from streams.worker import metrics

__all__ = [
    "INTEGRITY_FLAGS",
    "Checked",
    "Dismissed",
    "IntegrityChecker",
    "IntegrityConfig",
    "IntegrityView",
    "Listing",
    "fingerprint_record",
]

logger = logging.getLogger(__name__)

INTEGRITY_FLAGS = ("duplicate_image", "near_duplicate", "category_mismatch")
"""Flags that send a labelled listing to the listing-review topic."""

# Candidates verified per photo at most, nearest hashes first.
_MAX_VERIFIED = 16
# Never listed by the seller: later than any listing.
_NEVER = (math.inf, 0)


@dataclass(frozen=True, slots=True)
class IntegrityConfig:
    """The integrity settings."""

    rule: DuplicateRule = field(default_factory=DuplicateRule)
    max_candidates: int = 2000
    category_min_score: float = 0.9
    #: Embedding nearest neighbours judged per photo besides the hash's candidates.
    verify_candidates: int = 4

    @classmethod
    def from_settings(cls, s: Settings) -> IntegrityConfig:
        """The ``near_duplicate_*`` and ``category_mismatch_*`` settings."""
        i = s.integrity
        return cls(
            rule=DuplicateRule(
                i.near_duplicate_max_hamming,
                i.near_duplicate_min_cosine,
                i.near_duplicate_min_inliers,
                i.near_duplicate_min_hash_inliers,
            ),
            max_candidates=i.near_duplicate_max_candidates,
            category_min_score=i.category_mismatch_min_score,
            verify_candidates=i.near_duplicate_verify_candidates,
        )


@dataclass(frozen=True, slots=True)
class Listing:
    """What the checks need of one labelled listing."""

    product_id: str
    seller_id: str | None
    image_sha256: str
    model_version: str
    #: None when the image came from the label cache (not decoded here).
    fingerprint: Fingerprint | None
    #: The input event's, for the listing-fingerprints record.
    event_id: str = ""
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """One listing's outcome: the listing it copies, and its listing-fingerprints record."""

    duplicate_of: DuplicateOf | None = None
    #: (key, value) to produce; None when the index already had it.
    record: tuple[bytes, bytes] | None = None


# --- the record -----------------------------------------------------------------
def fingerprint_record(
    listing: Listing, owner: Owner, print_: StoredPrint | None
) -> tuple[bytes, bytes]:
    """The listing-fingerprints (key, value) of a seller's first listing of a photo."""
    fp = None
    if print_ is not None:
        f = print_.fingerprint
        emb = None if f.embedding is None else base64.b64encode(f.embedding.tobytes()).decode()
        feats = None
        if f.features is not None and len(f.features):
            feats = base64.b64encode(f.features.to_bytes()).decode()
        fp = PhotoFingerprint(
            phash=f.phash,
            mirror=f.mirror,
            crops=f.crops,
            embedding_f16_b64=emb,
            features_b64=feats,
        )
    record = ListingFingerprint(
        schema_version=SCHEMA_VERSION,
        event_id=listing.event_id or f"{listing.image_sha256}|{owner.seller_id}",
        occurred_at=listing.occurred_at or datetime.fromtimestamp(owner.listed_at_ms / 1000, UTC),
        image_sha256=listing.image_sha256,
        seller_id=owner.seller_id,
        product_id=owner.product_id,
        listed_at_ms=owner.listed_at_ms,
        model_version=listing.model_version if print_ is None else print_.model_version,
        fingerprint=fp,
    )
    return f"{listing.image_sha256}|{owner.seller_id}".encode(), codec.encode(record)


def _stored_print(rec: ListingFingerprint) -> StoredPrint | None:
    """The record's fingerprint; raises ValueError if malformed."""
    fp = rec.fingerprint
    if fp is None:
        return None
    if any(h >= 1 << 64 for h in (fp.phash, fp.mirror, *fp.crops)):
        raise ValueError("a hash over 64 bits")
    emb = None
    if fp.embedding_f16_b64 is not None:
        raw = base64.b64decode(fp.embedding_f16_b64, validate=True)
        if not raw or len(raw) % 2:
            raise ValueError("an embedding of odd bytes")
        emb = np.frombuffer(raw, dtype="<f2").astype(np.float16)
    feats = None
    if fp.features_b64 is not None:
        feats = LocalFeatures.from_bytes(base64.b64decode(fp.features_b64, validate=True))
    return StoredPrint(Fingerprint(fp.phash, fp.mirror, fp.crops, emb, feats), rec.model_version)


class IntegrityView:
    """The view of listing-fingerprints that the checks query: a :class:`FingerprintIndex`."""

    def __init__(self, index: FingerprintIndex | None = None) -> None:
        self.index = index if index is not None else FingerprintIndex()

    def __len__(self) -> int:
        return len(self.index)

    def apply(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Index listing-fingerprints records; tombstones and malformed ones are skipped."""
        counts = {"indexed": 0, "known": 0, "tombstone": 0, "invalid": 0}
        for _key, value in records:
            if value is None:
                # Nothing to forget: the index only grows (a photo's first sellers stay).
                counts["tombstone"] += 1
                continue
            try:
                rec = codec.decode_listing_fingerprint(value)
                stored = _stored_print(rec)
                changed = self.index.add(
                    rec.image_sha256, rec.seller_id, rec.product_id, rec.listed_at_ms, stored
                )
            except (SchemaError, ValueError):
                counts["invalid"] += 1
                continue
            counts["indexed" if changed else "known"] += 1
        for outcome, n in counts.items():
            if n:
                metrics.INTEGRITY_UPDATES.labels(outcome).inc(n)
        metrics.INTEGRITY_INDEXED.set(len(self.index))


#: Whether a reviewer dismissed two products (listings) as duplicates of each other.
Dismissed = Callable[[str, str], bool]


def _never_dismissed(_product_id: str, _other_product_id: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An indexed photo a listing may copy: its sha256, print, earliest other seller, source."""

    sha: str
    fingerprint: Fingerprint
    owner: Owner
    #: ``hash`` (a band lookup) or ``embedding`` (a nearest neighbour).
    found_by: str


# --- the checks -----------------------------------------------------------------
def _other(
    owners: Sequence[Owner],
    listing: Listing,
    before: tuple[float, int],
    dismissed: Dismissed = _never_dismissed,
) -> Owner | None:
    """The earliest listing of a photo by another seller than ``listing``'s, before ``before``.

    A seller who listed a photo first is not flagged for listing it again after
    others copied it, nor for copying a listing a reviewer dismissed as its duplicate.
    """
    return next(
        (
            o
            for o in owners
            if o.seller_id != listing.seller_id
            and o.order < before
            and not dismissed(listing.product_id, o.product_id)
        ),
        None,
    )


def _first_listed(owners: Sequence[Owner], listing: Listing) -> tuple[float, int]:
    """When ``listing``'s seller first listed its photo (:data:`_NEVER`: never before)."""
    return next((o.order for o in owners if o.seller_id == listing.seller_id), _NEVER)


class IntegrityChecker:
    """Finds the other sellers' listings whose photos a batch of listings copies."""

    def __init__(
        self,
        config: IntegrityConfig | None = None,
        view: IntegrityView | None = None,
        *,
        loaded: asyncio.Event | None = None,
        dismissed: Dismissed | None = None,
    ) -> None:
        self.config = config or IntegrityConfig()
        #: Pairs of products a reviewer dismissed as duplicates: never flagged again.
        self.dismissed = dismissed or _never_dismissed
        self.view = view if view is not None else IntegrityView()
        #: Set once the view has read listing-fingerprints to its end (None: nothing to wait for).
        self.loaded = loaded
        # Batches are checked one after the other, even while one waits on a thread.
        self._lock = asyncio.Lock()

    @property
    def index(self) -> FingerprintIndex:
        """The index the checks query."""
        return self.view.index

    async def check(self, listings: Sequence[Listing]) -> list[Checked]:
        """For each listing, in order: the earlier listing by another seller it copies, if any.

        Each listing is added to the index once checked; waits first until the
        view has read the topic to the end it had at start. One batch at a time:
        a listing's candidates are judged in a thread, and the next listing (of
        this batch or another) is checked only once it is in the index.
        """
        out = [Checked()] * len(listings)
        todo = [i for i, item in enumerate(listings) if item.seller_id is not None]
        if not todo:
            return out
        if self.loaded is not None and not self.loaded.is_set():
            logger.info("integrity checks wait for the integrity index to load")
            await self.loaded.wait()
        async with self._lock:
            now_ms = int(time.time() * 1000)
            for i in todo:
                out[i] = await self._check_one(listings[i], now_ms)
        return out

    async def _check_one(self, item: Listing, now_ms: int) -> Checked:
        index = self.index
        sha = item.image_sha256
        stored = None
        if item.fingerprint is not None:
            stored = StoredPrint(item.fingerprint, item.model_version)
        else:
            got = index.print_of(sha)
            # A print from another model is not checked as this model's.
            if got is not None and got.model_version == item.model_version:
                stored = got
            else:
                metrics.INTEGRITY_SKIPPED.labels("no_fingerprint").inc()
        owners = index.owners(sha)
        first = _first_listed(owners, item)
        dup = self._exact(item, owners, first)
        if dup is None and stored is not None:
            pool = self._pool(item, stored.fingerprint, first)
            if pool:
                # Local features are matched here (CPU work): off the event loop.
                dup = await asyncio.to_thread(self._near, item, stored.fingerprint, pool)
        seller = str(item.seller_id)
        had_print = index.print_of(sha) is not None
        changed = index.add(sha, seller, item.product_id, now_ms, stored)
        record = None
        if changed and (first == _NEVER or not had_print):
            owner = next(o for o in index.owners(sha) if o.seller_id == seller)
            record = fingerprint_record(item, owner, stored or index.print_of(sha))
        return Checked(dup, record)

    # --- matching ---------------------------------------------------------------
    def _exact(
        self, item: Listing, owners: Sequence[Owner], first: tuple[float, int]
    ) -> DuplicateOf | None:
        other = _other(owners, item, first, self.dismissed)
        if other is None:
            return None
        return DuplicateOf(
            product_id=other.product_id,
            seller_id=other.seller_id,
            image_sha256=item.image_sha256,
            match="exact",
            hamming=0,
        )

    def _pool(self, item: Listing, fp: Fingerprint, first: tuple[float, int]) -> list[_Candidate]:
        """Indexed photos near ``fp`` listed by other sellers before ``item``'s seller listed it.

        Near: an indexed hash within ``candidate_hamming`` bits (:class:`DuplicateRule`)
        of ``fp``'s hash or its mirror's, nearest first; then the
        ``verify_candidates`` nearest embeddings of this model not found so.
        """
        index = self.index
        exclude = index.row_of(item.image_sha256)
        near = index.near(
            fp,
            max_bits=self.config.rule.candidate_hamming,
            max_candidates=self.config.max_candidates,
            limit=_MAX_VERIFIED,
            exclude=exclude,
        )
        found = [(row, "hash") for row, _bits in near]
        if self.config.verify_candidates > 0 and self.config.rule.min_inliers > 0:
            seen = {row for row, _ in found}
            similar = index.similar(
                fp,
                model_version=item.model_version,
                limit=self.config.verify_candidates,
                exclude=exclude,
            )
            found += [(row, "embedding") for row, _cos in similar if row not in seen]
        pool = []
        for row, how in found:
            got = index.print_at(row)
            owner = _other(index.owners_of(row), item, first, self.dismissed)
            if got is not None and owner is not None:
                # Embeddings of two models do not compare: the hash alone decides.
                other = got.fingerprint
                if got.model_version != item.model_version:
                    other = Fingerprint(other.phash, other.mirror, other.crops)
                pool.append(_Candidate(index.sha_of(row), other, owner, how))
        return pool

    def _near(self, item: Listing, fp: Fingerprint, pool: list[_Candidate]) -> DuplicateOf | None:
        """The nearest photo of ``pool`` that ``fp`` copies, by the rule (in a thread)."""
        best: tuple[tuple[int, int, float], DuplicateOf] | None = None
        for cand in pool:
            if cand.sha == item.image_sha256:
                continue
            match = self.config.rule.match(fp, cand.fingerprint)
            if match is None:
                continue
            rank = (match.hamming, -(match.inliers or 0), -(match.cosine or 0.0))
            if best is None or rank < best[0]:
                best = (
                    rank,
                    DuplicateOf(
                        product_id=cand.owner.product_id,
                        seller_id=cand.owner.seller_id,
                        image_sha256=cand.sha,
                        match="near",
                        hamming=match.hamming,
                        cosine=match.cosine,
                        inliers=match.inliers,
                        candidate="hash" if cand.found_by == "hash" else "embedding",
                        accepted_by="hash" if match.step == "hash" else "features",
                    ),
                )
        return None if best is None else best[1]
