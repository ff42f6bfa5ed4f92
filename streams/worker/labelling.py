"""Label a micro-batch of product-image records: validate, fetch, hash, cache, infer.

Kafka-free on purpose: the image agent hands over a list of
:class:`~streams.worker.consumed.ConsumedRecord` and gets back, in input order, a
labelled product or a dead-letter reason for every record; one bad record never
sinks the batch. Per batch: one Redis MGET, one executor call that decodes,
preprocesses, infers and fingerprints the misses (each new image once, across
batches and workers: :mod:`streams.worker.claims`), then, run by the agent in input
order, :meth:`ImageLabeller.check_integrity` (:mod:`streams.worker.integrity`) and
:meth:`ImageLabeller.remember`, one pipelined write of the new image results
(:class:`~streams.worker.imageresult.ImageResult`). A photo a reviewer corrected
is labelled as the reviewer said (:mod:`streams.worker.corrections`); the cache keeps
the model's result. Products' categories reach Redis through the view builder
(:mod:`streams.worker.views`), not from here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
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
from streams.worker.cache import LabelCache
from streams.worker.claims import ImageClaims, Outcome, SingleFlight
from streams.worker.consumed import ConsumedRecord, Rejected, decode_or_reject
from streams.worker.corrections import CorrectionsView, PhotoCorrection
from streams.worker.fetch import FetchError, FetchPolicy, ImageFetcher
from streams.worker.imageresult import ImageResult
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
    image_result: ImageResult | None
    #: The model could not place the image (a flag of ``REVIEW_FLAGS``):
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


def _hash_all(blobs: Sequence[bytes]) -> list[str]:
    # hashlib releases the GIL on large buffers: run in the executor.
    return [hashlib.sha256(b).hexdigest() for b in blobs]


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
        corrections: CorrectionsView | None = None,
        corrections_loaded: asyncio.Event | None = None,
    ) -> None:
        self.engine = engine
        #: Reviewers' corrections of photos and dismissed duplicate pairs (None: none).
        self.corrections = corrections
        #: Set once ``corrections`` has read label-corrections to its end at start.
        self.corrections_loaded = corrections_loaded
        #: Maps the model's embedding to the search descriptor (None: no search).
        self.projection = projection
        self.cache = cache
        self.executor = executor
        self.limits = limits
        self.fetcher = ImageFetcher(fetch_policy)
        self.fetch_retries = fetch_retries
        self.integrity = IntegrityChecker(
            integrity or IntegrityConfig(),
            integrity_view,
            loaded=integrity_loaded,
            dismissed=None if corrections is None else corrections.dismissed,
        )
        self.flights = SingleFlight()
        self.claims = ImageClaims(
            cache,
            model_name=engine.model_name,
            model_version=engine.model_version,
            ttl_ms=claim_ttl_ms,
        )

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
        return len(self.flights)

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
            self.flights.forget(inferred)
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
        await self._corrections_loaded()
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
                _Image(sha, results[sha], was_cached, inferred.get(sha), self._correction(sha)),
                timings,
                labelled_at,
                self.integrity.config.category_min_score,
            )
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    async def _corrections_loaded(self) -> None:
        """Wait until the corrections view has read the topic to the end it had at start."""
        loaded = self.corrections_loaded
        if loaded is not None and not loaded.is_set():
            logger.info("labelling waits for the reviewers' corrections to load")
            await loaded.wait()

    def _correction(self, sha: str) -> PhotoCorrection | None:
        return None if self.corrections is None else self.corrections.for_photo(sha)

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
    ) -> tuple[dict[int, str], dict[str, ImageResult], set[str]]:
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
        results: dict[str, ImageResult] = {
            h: c for h, c in zip(unique, cached, strict=True) if c is not None
        }
        metrics.CACHE_HITS.inc(sum(1 for i in idx if hashes[i] in results))
        return hashes, results, set(results)

    async def _infer_new(
        self,
        blobs: dict[int, bytes],
        hashes: dict[int, str],
        results: dict[str, ImageResult],
        hit_hashes: set[str],
        inferred: dict[str, Fingerprint | None],
    ) -> tuple[dict[str, InferenceError], float, float]:
        """Infer the images Redis did not have; fill ``results``; return errors and timings.

        Images another batch in flight or another worker is inferring are
        awaited and added to ``hit_hashes`` (not inferred for these records).
        """
        idx = list(hashes)
        # Infer each missing image once, however many records carry it, and
        # however many batches in flight carry it.
        blob_of = {hashes[i]: blobs[i] for i in idx}
        misses: dict[str, bytes] = {}
        shared: dict[str, asyncio.Future[Outcome]] = {}
        for sha in dict.fromkeys(hashes[i] for i in idx):
            if sha in results:
                continue
            if (flight := self.flights.under_way(sha)) is not None:
                shared[sha] = flight
            else:
                misses[sha] = blob_of[sha]
        metrics.CACHE_MISSES.inc(sum(1 for i in idx if hashes[i] not in hit_hashes))
        metrics.INFERENCE_SHARED.inc(sum(1 for i in idx if hashes[i] in shared))
        elsewhere, done = await self.claims.claim(list(misses))
        for sha in elsewhere | done.keys():
            del misses[sha]
        errors: dict[str, InferenceError] = {}
        decode_ms, inference_ms = await self._infer(misses, results, errors, inferred)
        if elsewhere:
            await self._answer_claims(misses, results, errors)
        found, retry = await self.claims.wait_for(elsewhere)
        answered = done.keys() | (elsewhere - retry)
        metrics.INFERENCE_CLAIMED_ELSEWHERE.inc(sum(1 for i in idx if hashes[i] in answered))
        outcomes, cancelled = await SingleFlight.wait(shared)
        retry.update(cancelled)  # the other batch failed: infer them here after all
        outcomes.update(found)
        outcomes.update(done)
        for sha, outcome in outcomes.items():
            if isinstance(outcome, InferenceError):
                errors[sha] = outcome
            else:
                results[sha] = outcome
                hit_hashes.add(sha)  # not inferred for these records
        if retry:
            todo = {sha: blob_of[sha] for sha in retry}
            more_decode_ms, more_inference_ms = await self._infer(todo, results, errors, inferred)
            decode_ms += more_decode_ms
            inference_ms += more_inference_ms
        if errors:
            await self.claims.release(list(errors))
        return errors, decode_ms, inference_ms

    async def _answer_claims(
        self,
        claimed: Iterable[str],
        results: dict[str, ImageResult],
        errors: dict[str, InferenceError],
    ) -> None:
        """Answer this batch's claims now, before it waits on another worker's claims.

        Otherwise they are answered when the batch ends (:meth:`remember`), and
        a batch of the other worker that waits on one of them while holding a
        claim this batch waits on makes both wait a claim's whole lifetime, then
        infer each other's images: a 60 s stall and 10 to 14 images inferred
        twice in 2 of 6 runs of ``test_claims[cluster]`` under load. The same
        results are written again by :meth:`remember` (one more pipeline, only
        in a batch that waits on another worker).
        """
        answers = {sha: results[sha] for sha in claimed if sha in results}
        if answers and await self.cache.put(answers):
            self.flights.forget(answers)
        await self.claims.release([sha for sha in claimed if sha in errors])

    async def _infer(
        self,
        misses: dict[str, bytes],
        results: dict[str, ImageResult],
        errors: dict[str, InferenceError],
        inferred: dict[str, Fingerprint | None],
    ) -> tuple[float, float]:
        """Infer ``misses`` in the executor into ``results`` / ``errors``; (decode, infer) ms.

        From now until :meth:`remember` has written them to Redis, the images
        are in flight (:attr:`flights`), so that a batch processed concurrently
        takes these results instead of inferring the same images again.
        """
        if not misses:
            return 0.0, 0.0
        owned = self.flights.start(misses)
        outcomes: dict[str, Outcome] = {}
        try:
            batch, prints, vectors = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._model_stage, list(misses.values())
            )
            metrics.IMAGES_INFERRED.inc(len(misses))
            for sha, item, fp, vector in zip(misses, batch.items, prints, vectors, strict=True):
                if isinstance(item, InferenceError):
                    outcomes[sha] = errors[sha] = item
                else:
                    outcomes[sha] = results[sha] = ImageResult.of(item, vector)
                inferred[sha] = fp
        finally:
            self.flights.finish(owned, outcomes)
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
            self.flights.forget(images)

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Image:
    """One image's labelling: its hash, result, whether cached, fingerprint, correction."""

    sha: str
    #: The model's result (what the cache keeps).
    result: ImageResult
    cached: bool
    fingerprint: Fingerprint | None
    #: A reviewer's label of the photo, which replaces the model's in the outputs.
    correction: PhotoCorrection | None = None


def _labelled(
    record: ConsumedRecord,
    ev: ProductImageEvent,
    image: _Image,
    timings: Timings,
    labelled_at: datetime,
    category_min_score: float,
) -> Labelled:
    """The output of one labelled event: its ProductLabelled and what the cache keeps."""
    res = image.result if image.correction is None else image.correction.apply(image.result)
    flags = res.flags
    if category_mismatch(ev.declared_category, res.category, res.score, flags, category_min_score):
        flags = (*flags, "category_mismatch")
    value = ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=ev.event_id,
        occurred_at=ev.occurred_at,
        product_id=ev.product_id,
        labels=tuple(Label(label=label, score=score) for label, score in res.labels),
        category=res.category,
        category_score=res.score,
        model_name=res.model_name,
        model_version=res.model_version,
        image_sha256=image.sha,
        cached=image.cached,
        flags=flags,
        timings=timings,
        labelled_at=labelled_at,
        seller_id=ev.seller_id,
        title=ev.title,
        declared_category=ev.declared_category,
        corrected_by=res.corrected_by,
        correction_id=res.correction_id,
    )
    return Labelled(
        record=record,
        key=ev.product_id.encode(),
        value=codec.encode(value),
        cached=image.cached,
        image_sha256=image.sha,
        image_result=None if image.cached else image.result,
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
