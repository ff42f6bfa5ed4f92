"""Integrity checks of listings (brand protection): duplicate photos across sellers.

A listing is flagged ``duplicate_image`` when the same image file (sha256) was
listed before by another seller, and ``near_duplicate`` when the same photo,
re-encoded, resized, cropped or mirrored, was (the rule and its measurements:
:mod:`inference.serving.duplicates`). The evidence, the other seller's product,
goes in the event (:class:`~schemas.records.DuplicateOf`). Listings without a
``seller_id`` are neither checked nor remembered: whose photo it is is unknown.

Redis keys (``<prefix>`` is ``redis_key_prefix``; all expire after
``integrity_ttl_s``, renewed whenever the photo is listed again):

- ``<prefix>:fp:<sha256>``: the photo's fingerprint (hashes and float16 embedding,
  JSON) and the model version of the embedding;
- ``<prefix>:sellers:<sha256>``: hash, seller_id -> the first product (and time)
  that seller listed the photo under;
- ``<prefix>:phb:<band>:<value>``: set of ``<hash hex><sha256>``, every indexed
  hash (whole photo and its 90% crops) of every photo whose band ``band`` (16 of
  its 64 bits) has that value (multi-index hashing).

A batch takes four pipelined round trips, whatever its size: the fingerprints
of cache hits (whose photos were not decoded) and the batch's sellers; the
band sets; the candidates' fingerprints and sellers; the writes. Checks run in
input order (after the previous batch's), so a photo listed in one batch is
found by every later one, and listings in the same batch are checked against
the ones before them. While Redis is down the checks are skipped (counted).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio.client import Pipeline

from inference.serving.duplicates import DuplicateRule, index_bands, lookup_bands
from inference.serving.fingerprint import Fingerprint, hamming
from schemas.records import DuplicateOf
from streams.settings import Settings
from streams.worker import metrics
from streams.worker.cache import CacheUnavailable, LabelCache

__all__ = [
    "INTEGRITY_FLAGS",
    "IntegrityChecker",
    "IntegrityConfig",
    "Listing",
]

logger = logging.getLogger(__name__)

INTEGRITY_FLAGS = ("duplicate_image", "near_duplicate", "category_mismatch")
"""Flags that send a labelled listing to the listing-review topic."""

_json_decode = msgspec.json.Decoder(dict[str, Any]).decode
_json_encode = msgspec.json.Encoder().encode
# Candidates verified per photo at most, nearest hashes first.
_MAX_VERIFIED = 16


@dataclass(frozen=True, slots=True)
class IntegrityConfig:
    """The integrity settings."""

    rule: DuplicateRule = field(default_factory=DuplicateRule)
    ttl_s: int = 400 * 24 * 3600
    max_candidates: int = 2000
    category_min_score: float = 0.9

    @classmethod
    def from_settings(cls, s: Settings) -> IntegrityConfig:
        """The ``near_duplicate_*``, ``category_mismatch_*`` and ``integrity_*`` settings."""
        return cls(
            rule=DuplicateRule(s.near_duplicate_max_hamming, s.near_duplicate_min_cosine),
            ttl_s=s.integrity_ttl_s,
            max_candidates=s.near_duplicate_max_candidates,
            category_min_score=s.category_mismatch_min_score,
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


@dataclass(slots=True)
class _Owner:
    seller_id: str
    product_id: str
    listed_at_ms: int


def _owners(raw: dict[bytes, bytes] | None) -> list[_Owner]:
    out = []
    for seller, value in (raw or {}).items():
        try:
            data = _json_decode(value)
            out.append(_Owner(seller.decode(), str(data["p"]), int(data["t"])))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            continue
    return sorted(out, key=lambda o: o.listed_at_ms)


def _other(owners: Sequence[_Owner], listing: Listing, before_ms: float) -> _Owner | None:
    """The earliest listing of a photo by another seller than ``listing``'s, before ``before_ms``.

    A seller who listed a photo first is not flagged for listing it again after
    others copied it.
    """
    return next(
        (o for o in owners if o.seller_id != listing.seller_id and o.listed_at_ms < before_ms),
        None,
    )


def _first_listed(owners: Sequence[_Owner], listing: Listing) -> float:
    """When ``listing``'s seller first listed its photo (infinity: never before)."""
    return next((o.listed_at_ms for o in owners if o.seller_id == listing.seller_id), math.inf)


class IntegrityChecker:
    """Finds the other sellers' listings whose photos a batch of listings copies."""

    def __init__(self, cache: LabelCache, config: IntegrityConfig) -> None:
        self.cache = cache
        self.config = config
        self.prefix = cache.prefix

    def _fp_key(self, sha: str) -> str:
        return f"{self.prefix}:fp:{sha}"

    def _sellers_key(self, sha: str) -> str:
        return f"{self.prefix}:sellers:{sha}"

    def _band_key(self, band: int, value: int) -> str:
        return f"{self.prefix}:phb:{band}:{value:04x}"

    async def check(self, listings: Sequence[Listing]) -> list[DuplicateOf | None]:
        """For each listing, in order: the earlier listing by another seller it copies, or None."""
        out: list[DuplicateOf | None] = [None] * len(listings)
        todo = [i for i, item in enumerate(listings) if item.seller_id is not None]
        if not todo:
            return out
        try:
            prints, sellers = await self._read_batch([listings[i] for i in todo])
            near = await self._candidates(prints)
            found = await self._read_candidates(near)
        except CacheUnavailable:
            metrics.INTEGRITY_SKIPPED.labels("redis_unavailable").inc(len(todo))
            return out
        seen: list[tuple[Listing, Fingerprint | None]] = []  # earlier in this batch
        for i in todo:
            item = listings[i]
            fp = prints.get(item.image_sha256)
            if fp is None:
                metrics.INTEGRITY_SKIPPED.labels("no_fingerprint").inc()
            owners = sellers.get(item.image_sha256, [])
            first_ms = _first_listed(owners, item)
            out[i] = self._exact(item, owners, first_ms, seen)
            if out[i] is None and fp is not None:
                near_pool = self._pool(
                    item, first_ms, near.get(item.image_sha256, []), *found, seen
                )
                out[i] = self._near(item, fp, near_pool)
            seen.append((item, fp))
        await self._write([(listings[i], prints.get(listings[i].image_sha256)) for i in todo])
        return out

    # --- matching ---------------------------------------------------------------
    def _exact(
        self,
        item: Listing,
        owners: list[_Owner],
        first_ms: float,
        seen: list[tuple[Listing, Fingerprint | None]],
    ) -> DuplicateOf | None:
        other = _other(owners, item, first_ms)
        if other is None and first_ms == math.inf:
            # Earlier in the batch, so later than any listing Redis knows of.
            earlier = next(
                (
                    s
                    for s, _ in seen
                    if s.image_sha256 == item.image_sha256 and s.seller_id != item.seller_id
                ),
                None,
            )
            if earlier is None or earlier.seller_id is None:
                return None
            other = _Owner(earlier.seller_id, earlier.product_id, 0)
        if other is None:
            return None
        return DuplicateOf(
            product_id=other.product_id,
            seller_id=other.seller_id,
            image_sha256=item.image_sha256,
            match="exact",
            hamming=0,
        )

    def _pool(
        self,
        item: Listing,
        first_ms: float,
        candidates: list[str],
        cand_prints: dict[str, tuple[Fingerprint, str]],
        cand_sellers: dict[str, list[_Owner]],
        seen: list[tuple[Listing, Fingerprint | None]],
    ) -> list[tuple[str, Fingerprint, _Owner]]:
        """Photos listed by other sellers before ``item``'s seller listed its: sha, print, owner."""
        pool = []
        for sha in candidates:
            got = cand_prints.get(sha)
            owner = _other(cand_sellers.get(sha, []), item, first_ms)
            if got is not None and owner is not None:
                # Embeddings of two models do not compare: the hash alone decides.
                fp, version = got
                pool.append((sha, fp if version == item.model_version else _hashes_only(fp), owner))
        if first_ms == math.inf:  # earlier in the batch: later than any listing Redis knows
            for s, sfp in seen:
                if sfp is not None and s.seller_id not in (None, item.seller_id):
                    pool.append((s.image_sha256, sfp, _Owner(str(s.seller_id), s.product_id, 0)))
        return pool

    def _near(
        self, item: Listing, fp: Fingerprint, pool: list[tuple[str, Fingerprint, _Owner]]
    ) -> DuplicateOf | None:
        """The nearest photo of ``pool`` that ``fp`` copies, by the rule."""
        best: tuple[tuple[int, float], DuplicateOf] | None = None
        for sha, other_fp, owner in pool:
            if sha == item.image_sha256:
                continue
            match = self.config.rule.match(fp, other_fp)
            if match is None:
                continue
            rank = (match.hamming, -(match.cosine or 0.0))
            if best is None or rank < best[0]:
                best = (
                    rank,
                    DuplicateOf(
                        product_id=owner.product_id,
                        seller_id=owner.seller_id,
                        image_sha256=sha,
                        match="near",
                        hamming=match.hamming,
                        cosine=match.cosine,
                    ),
                )
        return None if best is None else best[1]

    # --- Redis ------------------------------------------------------------------
    async def _read_batch(
        self, listings: Sequence[Listing]
    ) -> tuple[dict[str, Fingerprint], dict[str, list[_Owner]]]:
        """The batch's fingerprints (Redis's for cache hits) and earlier sellers of its photos."""
        prints = {x.image_sha256: x.fingerprint for x in listings if x.fingerprint is not None}
        missing = list(
            dict.fromkeys(x.image_sha256 for x in listings if x.image_sha256 not in prints)
        )
        shas = list(dict.fromkeys(x.image_sha256 for x in listings))

        def fill(pipe: Pipeline) -> None:
            for sha in shas:
                pipe.hgetall(self._sellers_key(sha))
            if missing:
                pipe.mget([self._fp_key(sha) for sha in missing])

        replies = await self.cache.pipelined("integrity_read", fill)
        sellers = {sha: _owners(r) for sha, r in zip(shas, replies, strict=False)}
        versions = {x.image_sha256: x.model_version for x in listings}
        if missing:
            for sha, raw in zip(missing, replies[-1], strict=True):
                got = _fingerprint_of(raw)
                # A print from another model is not rewritten as this model's.
                if got is not None and got[1] == versions[sha]:
                    prints[sha] = got[0]
        return prints, sellers

    async def _candidates(self, prints: dict[str, Fingerprint]) -> dict[str, list[str]]:
        """Per photo, indexed photos whose band hits are near its hash (nearest first).

        Near: within ``candidate_hamming`` bits (:class:`DuplicateRule`).
        """
        if not prints:
            return {}
        keys = {sha: sorted(lookup_bands(fp)) for sha, fp in prints.items()}
        per_key = max(1, self.config.max_candidates // max(len(k) for k in keys.values()))

        def fill(pipe: Pipeline) -> None:
            for band_keys in keys.values():
                for band, value in band_keys:
                    pipe.srandmember(self._band_key(band, value), per_key)

        replies = iter(await self.cache.pipelined("integrity_lookup", fill))
        limit = self.config.rule.candidate_hamming
        out: dict[str, list[str]] = {}
        for sha, band_keys in keys.items():
            fp = prints[sha]
            nearest: dict[str, int] = {}
            for _ in band_keys:
                for member in next(replies) or ():
                    parsed = _member(member)
                    if parsed is None:
                        continue
                    h, other = parsed
                    d = min(hamming(fp.phash, h), hamming(fp.mirror, h))
                    if other != sha and d <= limit and d < nearest.get(other, 65):
                        nearest[other] = d
            out[sha] = sorted(nearest, key=nearest.__getitem__)[:_MAX_VERIFIED]
        return out

    async def _read_candidates(
        self, near: dict[str, list[str]]
    ) -> tuple[dict[str, tuple[Fingerprint, str]], dict[str, list[_Owner]]]:
        """The candidates' fingerprints (with their model versions) and sellers."""
        shas = list(dict.fromkeys(sha for cands in near.values() for sha in cands))
        if not shas:
            return {}, {}

        def fill(pipe: Pipeline) -> None:
            pipe.mget([self._fp_key(sha) for sha in shas])
            for sha in shas:
                pipe.hgetall(self._sellers_key(sha))

        replies = await self.cache.pipelined("integrity_candidates", fill)
        prints = {}
        for sha, raw in zip(shas, replies[0], strict=True):
            got = _fingerprint_of(raw)
            if got is not None:
                prints[sha] = got
        return prints, {sha: _owners(r) for sha, r in zip(shas, replies[1:], strict=True)}

    async def _write(self, listings: Sequence[tuple[Listing, Fingerprint | None]]) -> None:
        """Remember the batch's photos: fingerprints, sellers, band index (one round trip)."""
        ttl = self.config.ttl_s
        now_ms = int(time.time() * 1000)

        def fill(pipe: Pipeline) -> None:
            for item, fp in listings:
                sha = item.image_sha256
                sellers = self._sellers_key(sha)
                owner = _json_encode({"p": item.product_id, "t": now_ms})
                pipe.hsetnx(sellers, str(item.seller_id), owner)
                pipe.expire(sellers, ttl)
                if fp is None:
                    continue
                record = {"fp": fp.to_json(), "model_version": item.model_version}
                pipe.set(self._fp_key(sha), _json_encode(record), ex=ttl)
                for (band, value), hashes in index_bands(fp).items():
                    key = self._band_key(band, value)
                    pipe.sadd(key, *(f"{h:016x}{sha}" for h in sorted(hashes)))
                    pipe.expire(key, ttl)

        try:
            await self.cache.pipelined("integrity_write", fill)
        except CacheUnavailable:
            metrics.INTEGRITY_SKIPPED.labels("redis_unavailable").inc(len(listings))


def _member(raw: bytes) -> tuple[int, str] | None:
    """(indexed hash, sha256) of a band set member; None if it is not one of ours."""
    text = raw.decode("ascii", "replace")
    try:
        return int(text[:16], 16), text[16:]
    except ValueError:
        return None


def _hashes_only(fp: Fingerprint) -> Fingerprint:
    return Fingerprint(fp.phash, fp.mirror, fp.crops)


def _fingerprint_of(raw: bytes | None) -> tuple[Fingerprint, str] | None:
    """A stored fingerprint and its embedding's model version; None if absent or malformed."""
    if raw is None:
        return None
    try:
        data = _json_decode(raw)
        return Fingerprint.from_json(data["fp"]), str(data["model_version"])
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        logger.warning("malformed fingerprint record in Redis; ignored")
        return None
