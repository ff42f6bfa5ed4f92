"""Label a micro-batch of product-image records: validate, fetch, hash, cache, infer.

Kafka-free on purpose: the image agent hands this module a list of
:class:`~streams.worker.consumed.ConsumedRecord` and gets back, in input order, either a
labelled-product value or a dead-letter reason for every record. Nothing here
raises for one bad record; the batch always goes on.

Per batch: one Redis MGET for every image hash, one executor call that decodes,
preprocesses and infers the misses (identical images in one batch are inferred
once), and one pipelined Redis write of the new image results. The write is a
separate step, :meth:`ImageLabeller.remember`, which the agent runs in input
order after ``process``. Products' categories are not written here: the
product-labels records this agent produces are the record, and the view builder
(:mod:`streams.worker.views`) applies them to Redis. An image that misses the cache in two
concurrent batches is inferred once: from the start of its inference until its
result is in Redis, it is held in :attr:`ImageLabeller._inflight`, and the
other batch awaits it there (single flight).

Across workers, the misses a batch is about to infer are first claimed in
Redis (``SET NX PX``, one pipelined round trip, ``image_claim_ttl_ms``): an
image another worker has claimed is not inferred here; the batch infers its own
claims, then polls Redis (every 20 ms) until the other worker's results are
written. The claim goes with the result's write (or at once when the image
fails to decode), so a claim that is gone with no result means its holder
gave up, and the waiter infers the image itself; a holder that dies leaves its
claims to expire, which bounds the wait. With Redis down, nothing is claimed
and every worker infers its own misses, as before claims.

Every image inferred here is also fingerprinted (perceptual hashes of the
decoded pixels and the model's embedding). :meth:`ImageLabeller.check_integrity`,
which the agent runs in input order before ``remember``, uses the fingerprints
to flag copies of other sellers' photos and to record each seller's first
listing of a photo on ``listing-fingerprints`` (:mod:`streams.worker.integrity`);
``category_mismatch`` is decided with the label itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from inference.serving.decode import ImageLimits
from inference.serving.engine import (
    REVIEW_FLAGS,
    BatchResult,
    Engine,
    Prediction,
    predict_with_fingerprints,
)
from inference.serving.errors import InferenceError
from inference.serving.fingerprint import Fingerprint
from inference.serving.search import EmbeddingProjection
from inference.serving.taxonomy import category_mismatch
from schemas import codec
from schemas.records import SCHEMA_VERSION, Label, ProductImageEvent, ProductLabelled, Timings
from streams.worker import metrics
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.consumed import ConsumedRecord, Rejected, decode_or_reject
from streams.worker.fetch import FetchError, FetchPolicy, ImageFetcher
from streams.worker.integrity import (
    INTEGRITY_FLAGS,
    Checked,
    IntegrityChecker,
    IntegrityConfig,
    IntegrityView,
    Listing,
)
from streams.worker.search import embedding_record, vector_b64

__all__ = ["ImageLabeller", "Labelled", "Rejected"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Labelled:
    """A record that was labelled: the output key and value."""

    record: ConsumedRecord
    key: bytes
    value: bytes
    cached: bool
    image_sha256: str
    # What :meth:`ImageLabeller.remember` caches: the image's result (None when it
    # came from the cache). The product's state is not written here: the view
    # builder takes it from the product-labels record (streams.worker.views).
    image_result: dict[str, Any] | None
    #: The model could not place the image (``low_confidence``/``unknown_product``):
    #: the event also goes to the product-review topic.
    review: bool = False
    #: The event as a record (``value`` encodes it), for the integrity checks.
    output: ProductLabelled | None = None
    #: The photo's fingerprint when it was decoded here (None for a cache hit).
    fingerprint: Fingerprint | None = None
    #: The product's ``product-embeddings`` value (its search descriptor), when the
    #: model has a search projection.
    embedding: bytes | None = None
    #: The listing-fingerprints (key, value) when this seller's listing of the photo
    #: is new to the integrity index.
    integrity_record: tuple[bytes, bytes] | None = None

    @property
    def listing_review(self) -> bool:
        """An integrity flag is set: the event also goes to the listing-review topic."""
        return self.output is not None and any(f in INTEGRITY_FLAGS for f in self.output.flags)


# What one image's inference gives: its result payload, or why it has none.
_Outcome = dict[str, Any] | InferenceError


def _hash_all(blobs: Sequence[bytes]) -> list[str]:
    # hashlib releases the GIL on large buffers: run in the executor.
    return [hashlib.sha256(b).hexdigest() for b in blobs]


def _result_payload(pred: Prediction, vector: str | None = None) -> dict[str, Any]:
    payload = {
        "labels": [[label, round(float(score), 6)] for label, score in pred.labels],
        "category": pred.category,
        "score": round(float(pred.score), 6),
        "flags": list(pred.flags),
        "model_name": pred.model_name,
        "model_version": pred.model_version,
    }
    if vector is not None:
        # Cached with the labels (~350 bytes at 128 dims), so a cache hit (another
        # product with the same photo) is indexed for search without inference.
        payload["vector"] = vector
    return payload


def _vectors(
    projection: EmbeddingProjection | None, items: Sequence[Prediction | InferenceError]
) -> list[str | None]:
    """The search descriptor of each prediction (base64 float16), None elsewhere."""
    out: list[str | None] = [None] * len(items)
    if projection is None:
        return out
    embeddings = {
        i: p.embedding
        for i, p in enumerate(items)
        if isinstance(p, Prediction) and p.embedding is not None
    }
    if embeddings:
        stacked = np.stack(list(embeddings.values()))
        for i, vec in zip(embeddings, projection.project(stacked), strict=True):
            out[i] = vector_b64(vec)
    return out


class ImageLabeller:
    """Turns batches of product-image records into labels and dead letters."""

    def __init__(
        self,
        engine: Engine,
        cache: LabelCache,
        executor: Executor,
        *,
        limits: ImageLimits,
        fetch_policy: FetchPolicy,
        fetch_retries: int = 2,
        claim_ttl_ms: int = 0,
        integrity: IntegrityConfig | None = None,
        projection: EmbeddingProjection | None = None,
        integrity_view: IntegrityView | None = None,
        integrity_loaded: asyncio.Event | None = None,
    ) -> None:
        self.engine = engine
        #: Maps the model's embedding to the search descriptor (None: no search).
        self.projection = projection
        self.cache = cache
        self.executor = executor
        self.limits = limits
        self.fetcher = ImageFetcher(fetch_policy)
        self.fetch_retries = fetch_retries
        self.claim_ttl_ms = claim_ttl_ms
        self.integrity = IntegrityChecker(
            integrity or IntegrityConfig(), integrity_view, loaded=integrity_loaded
        )
        # Whose claim a key holds, for whoever reads Redis while debugging.
        self.worker_id = f"worker-{uuid.uuid4().hex[:12]}"
        # Image hash -> its inference under way, or done and not yet in Redis.
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}

    async def _image_bytes(self, event: ProductImageEvent) -> bytes:
        if event.image_uri is None:
            return codec.decode_inline_image(event, max_bytes=self.limits.max_bytes)
        # A retriable failure (timeout, 5xx, connection reset) is tried again a
        # few times before the event is dead-lettered with image.fetch_failed.
        for attempt in range(self.fetch_retries + 1):
            try:
                return await self.fetcher.fetch(event.image_uri)
            except FetchError as exc:
                if not exc.retriable or attempt == self.fetch_retries:
                    raise
                await asyncio.sleep(0.2 * 4**attempt)
        raise AssertionError("unreachable")

    @property
    def inflight(self) -> int:
        """Images inferred or being inferred here whose results Redis does not hold yet."""
        return len(self._inflight)

    async def close(self) -> None:
        """Release pooled HTTP connections."""
        await self.fetcher.close()

    async def process(self, records: Sequence[ConsumedRecord]) -> list[Labelled | Rejected]:
        """Label ``records``; the result has one entry per record, in order."""
        # The images this call inferred, with their fingerprints.
        inferred: dict[str, Fingerprint | None] = {}
        try:
            return await self._process(records, inferred)
        except BaseException:
            # No remember() will follow for these results: stop sharing them.
            self._forget_inferred(inferred)
            raise

    async def _process(
        self, records: Sequence[ConsumedRecord], inferred: dict[str, Fingerprint | None]
    ) -> list[Labelled | Rejected]:
        started = time.monotonic()
        out: list[Labelled | Rejected | None] = [None] * len(records)
        events = decode_or_reject(records, codec.decode_product_image, out)
        blobs = await self._fetch_all(records, events, out)
        hashes, results, hit_hashes = await self._lookup(blobs)
        errors, decode_ms, inference_ms = await self._infer_new(
            blobs, hashes, results, hit_hashes, inferred
        )
        labelled_at = datetime.now(UTC)
        for i, sha in hashes.items():
            if sha in errors:
                err = errors[sha]
                out[i] = Rejected(records[i], err.code, str(err))
                continue
            was_cached = sha in hit_hashes
            timings = Timings(
                decode_ms=0.0 if was_cached else round(decode_ms, 3),
                inference_ms=0.0 if was_cached else round(inference_ms, 3),
                end_to_end_ms=round(1000 * (time.monotonic() - started), 3),
            )
            out[i] = _labelled(
                records[i],
                events[i],
                _Image(sha, results[sha], was_cached, inferred.get(sha)),
                timings,
                labelled_at,
                self.integrity.config.category_min_score,
            )
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    async def _fetch_all(
        self,
        records: Sequence[ConsumedRecord],
        events: dict[int, ProductImageEvent],
        out: list[Labelled | Rejected | None],
    ) -> dict[int, bytes]:
        """Fetch or decode the image bytes of every valid event concurrently."""
        idx = list(events)
        fetched = await asyncio.gather(
            *(self._image_bytes(events[i]) for i in idx), return_exceptions=True
        )
        blobs: dict[int, bytes] = {}
        for i, got in zip(idx, fetched, strict=True):
            if isinstance(got, bytes):
                blobs[i] = got
            elif isinstance(got, FetchError | codec.SchemaError | InferenceError):
                out[i] = Rejected(records[i], got.code, str(got))
            elif isinstance(got, BaseException):
                if isinstance(got, asyncio.CancelledError):
                    raise got
                out[i] = Rejected(records[i], "image.fetch_failed", repr(got))
        return blobs

    async def _lookup(
        self, blobs: dict[int, bytes]
    ) -> tuple[dict[int, str], dict[str, dict[str, Any]], set[str]]:
        """Hash every image (off the loop) and look the hashes up in Redis (one MGET)."""
        idx = list(blobs)
        hashes = dict(
            zip(
                idx,
                # Not in the inference executor: there it would wait for the batch
                # before this one to finish its inference.
                await asyncio.to_thread(_hash_all, [blobs[i] for i in idx]),
                strict=True,
            )
        )
        engine = self.engine
        unique = list(dict.fromkeys(hashes.values()))
        cached = await self.cache.get_images(unique, engine.model_name, engine.model_version)
        results: dict[str, dict[str, Any]] = {
            h: c for h, c in zip(unique, cached, strict=True) if c is not None
        }
        metrics.CACHE_HITS.inc(sum(1 for i in idx if hashes[i] in results))
        return hashes, results, set(results)

    async def _infer_new(
        self,
        blobs: dict[int, bytes],
        hashes: dict[int, str],
        results: dict[str, dict[str, Any]],
        hit_hashes: set[str],
        inferred: dict[str, Fingerprint | None],
    ) -> tuple[dict[str, InferenceError], float, float]:
        """Infer the images Redis did not have; fill ``results``; return errors and timings.

        Images another batch in flight is inferring are awaited and added to
        ``hit_hashes`` (not inferred for these records).
        """
        idx = list(hashes)
        # Infer each missing image once, however many records carry it, and
        # however many batches in flight carry it: a hash another batch is
        # inferring right now is awaited, not inferred again.
        misses: dict[str, bytes] = {}
        shared: dict[str, asyncio.Future[_Outcome]] = {}
        for i in idx:
            sha = hashes[i]
            if sha in results or sha in misses or sha in shared:
                continue
            if (pending := self._inflight.get(sha)) is not None:
                shared[sha] = pending
            else:
                misses[sha] = blobs[i]
        metrics.CACHE_MISSES.inc(sum(1 for i in idx if hashes[i] not in hit_hashes))
        metrics.INFERENCE_SHARED.inc(sum(1 for i in idx if hashes[i] in shared))
        elsewhere = await self._claim(misses)
        errors: dict[str, InferenceError] = {}
        decode_ms, inference_ms = await self._infer(misses, results, errors, inferred)
        retry = await self._await_claimed(elsewhere, results, hit_hashes)
        metrics.INFERENCE_CLAIMED_ELSEWHERE.inc(
            sum(1 for i in idx if hashes[i] in elsewhere and hashes[i] not in retry)
        )
        if shared:
            # asyncio.wait neither raises the futures' outcomes nor cancels them.
            await asyncio.wait(shared.values())
        for sha, pending in shared.items():
            if pending.cancelled():  # the other batch failed: infer it here after all
                retry[sha] = next(blobs[i] for i in idx if hashes[i] == sha)
                continue
            outcome = pending.result()
            if isinstance(outcome, InferenceError):
                errors[sha] = outcome
            else:
                results[sha] = outcome
                hit_hashes.add(sha)  # not inferred for these records
        if retry:
            more_decode_ms, more_inference_ms = await self._infer(retry, results, errors, inferred)
            decode_ms += more_decode_ms
            inference_ms += more_inference_ms
        if errors and self.claim_ttl_ms:
            await self.cache.release_claims(list(errors), self.engine.model_version)
        return errors, decode_ms, inference_ms

    async def _claim(self, misses: dict[str, bytes]) -> dict[str, bytes]:
        """Claim ``misses`` in Redis; take out and return those another worker holds."""
        if not misses or not self.claim_ttl_ms:
            return {}
        hashes = list(misses)
        mine = await self.cache.claim_images(
            hashes, self.worker_id, self.engine.model_version, self.claim_ttl_ms
        )
        return {sha: misses.pop(sha) for sha, ok in zip(hashes, mine, strict=True) if not ok}

    async def _await_claimed(
        self,
        elsewhere: dict[str, bytes],
        results: dict[str, dict[str, Any]],
        hit_hashes: set[str],
    ) -> dict[str, bytes]:
        """Wait for the results of images other workers claimed; return those to infer here.

        A result that arrives fills ``results`` and ``hit_hashes`` (not inferred
        here). An image whose claim is gone with no result, or still missing once
        a claim's whole lifetime has passed, or any while Redis is down, comes
        back to be inferred by this worker.
        """
        pending = dict(elsewhere)
        orphans: dict[str, bytes] = {}
        engine = self.engine
        deadline = time.monotonic() + self.claim_ttl_ms / 1000 + 1.0
        while pending and time.monotonic() < deadline:
            try:
                found, held = await self.cache.peek_claimed(
                    list(pending), engine.model_name, engine.model_version
                )
            except CacheUnavailable:
                break
            for sha, res, claimed in zip(list(pending), found, held, strict=True):
                if res is not None:
                    results[sha] = res
                    hit_hashes.add(sha)
                    del pending[sha]
                elif not claimed:
                    orphans[sha] = pending.pop(sha)
            if pending:
                await asyncio.sleep(0.02)
        orphans.update(pending)
        return orphans

    async def _infer(
        self,
        misses: dict[str, bytes],
        results: dict[str, dict[str, Any]],
        errors: dict[str, InferenceError],
        inferred: dict[str, Fingerprint | None],
    ) -> tuple[float, float]:
        """Infer ``misses`` in the executor into ``results`` / ``errors``; (decode, infer) ms.

        From now until :meth:`remember` has written them to Redis, the hashes
        are in :attr:`_inflight`, so that a batch processed concurrently waits
        for (or takes) this result instead of inferring the same image again.
        Images that failed to decode leave it at once (they are never cached).
        If the inference itself fails or is cancelled, the futures are
        cancelled and a waiting batch infers those images itself.
        """
        if not misses:
            return 0.0, 0.0
        loop = asyncio.get_running_loop()
        owned = {sha: loop.create_future() for sha in misses}
        self._inflight.update(owned)
        try:
            batch, prints, vectors = await loop.run_in_executor(
                self.executor, self._model_stage, list(misses.values())
            )
            metrics.IMAGES_INFERRED.inc(len(misses))
            for sha, item, fp, vector in zip(misses, batch.items, prints, vectors, strict=True):
                outcome: _Outcome
                if isinstance(item, InferenceError):
                    outcome = errors[sha] = item
                else:
                    outcome = results[sha] = _result_payload(item, vector)
                owned[sha].set_result(outcome)
                inferred[sha] = fp
        finally:
            for sha, fut in owned.items():
                if sha in errors or not fut.done():
                    if self._inflight.get(sha) is fut:
                        del self._inflight[sha]
                    fut.cancel()  # a no-op once it has its result
        timings = batch.timings
        metrics.DECODE_SECONDS.observe(timings.decode_s)
        metrics.PREPROCESS_SECONDS.observe(timings.preprocess_s)
        metrics.INFERENCE_SECONDS.observe(timings.inference_s)
        return 1000 * (timings.decode_s + timings.preprocess_s), 1000 * timings.inference_s

    def _model_stage(
        self, blobs: list[bytes]
    ) -> tuple[BatchResult, list[Fingerprint | None], list[str | None]]:
        """Decode, infer, fingerprint and project one batch (in the executor, off the loop)."""
        batch, prints = predict_with_fingerprints(self.engine, blobs, self.limits)
        return batch, prints, _vectors(self.projection, batch.items)

    async def remember(self, results: Sequence[Labelled | Rejected]) -> None:
        """Cache the batch's new image results (one pipeline)."""
        images = {
            res.image_sha256: res.image_result
            for res in results
            if isinstance(res, Labelled) and res.image_result is not None
        }
        try:
            if images:
                await self.cache.put(images)
        finally:
            # Redis has them now (or is down, and then a repeat is inferred again).
            self._forget_inferred(images)

    async def check_integrity(
        self, results: list[Labelled | Rejected]
    ) -> list[Labelled | Rejected]:
        """Add the duplicate flags and their evidence; run in input order, batch after batch.

        Each batch is checked against the photos of every batch before it and
        of the records before it in the batch (see :mod:`streams.worker.integrity`).
        """
        labelled = [
            (i, r, r.output)
            for i, r in enumerate(results)
            if isinstance(r, Labelled) and r.output is not None
        ]
        listings = [
            Listing(
                o.product_id,
                o.seller_id,
                o.image_sha256,
                o.model_version,
                r.fingerprint,
                event_id=o.event_id,
                occurred_at=o.occurred_at,
            )
            for _, r, o in labelled
        ]
        try:
            found = await self.integrity.check(listings)
        except Exception:  # a bug in the checks must not stop labelling
            logger.exception("integrity checks failed for a batch of %d", len(listings))
            metrics.INTEGRITY_SKIPPED.labels("internal_error").inc(len(listings))
            found = [Checked()] * len(listings)
        checked = list(results)
        for (i, res, output), got in zip(labelled, found, strict=True):
            flags = output.flags
            changes: dict[str, Any] = {"integrity_record": got.record}
            if (dup := got.duplicate_of) is not None:
                flags = (*flags, "duplicate_image" if dup.match == "exact" else "near_duplicate")
                flagged = msgspec.structs.replace(output, flags=flags, duplicate_of=dup)
                changes |= {"output": flagged, "value": codec.encode(flagged)}
            checked[i] = dataclasses.replace(res, **changes)
            for flag in flags:
                if flag in INTEGRITY_FLAGS:
                    metrics.INTEGRITY_FLAGS.labels(flag).inc()
        return checked

    def _forget_inferred(self, hashes: Iterable[str]) -> None:
        for sha in hashes:
            fut = self._inflight.get(sha)
            if fut is not None and fut.done():
                del self._inflight[sha]


@dataclasses.dataclass(frozen=True, slots=True)
class _Image:
    """One image's labelling: its hash, result payload, whether cached, fingerprint."""

    sha: str
    result: dict[str, Any]
    cached: bool
    fingerprint: Fingerprint | None


def _labelled(
    record: ConsumedRecord,
    ev: ProductImageEvent,
    image: _Image,
    timings: Timings,
    labelled_at: datetime,
    category_min_score: float,
) -> Labelled:
    """The output of one labelled event: its ProductLabelled and what the cache keeps."""
    res = image.result
    flags = tuple(res.get("flags", ()))
    score = float(res["score"])
    if category_mismatch(ev.declared_category, res["category"], score, flags, category_min_score):
        flags = (*flags, "category_mismatch")
    value = ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=ev.event_id,
        occurred_at=ev.occurred_at,
        product_id=ev.product_id,
        labels=tuple(Label(label=lab, score=float(s)) for lab, s in res["labels"]),
        category=res["category"],
        category_score=score,
        model_name=res["model_name"],
        model_version=res["model_version"],
        image_sha256=image.sha,
        cached=image.cached,
        flags=flags,
        timings=timings,
        labelled_at=labelled_at,
        seller_id=ev.seller_id,
        declared_category=ev.declared_category,
    )
    return Labelled(
        record=record,
        key=ev.product_id.encode(),
        value=codec.encode(value),
        cached=image.cached,
        image_sha256=image.sha,
        image_result=None if image.cached else res,
        review=any(flag in REVIEW_FLAGS for flag in value.flags),
        output=value,
        fingerprint=image.fingerprint,
        embedding=embedding_record(
            event_id=ev.event_id,
            occurred_at=ev.occurred_at,
            product_id=ev.product_id,
            image_sha256=image.sha,
            result=res,
        ),
    )
