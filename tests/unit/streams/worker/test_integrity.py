"""The integrity checks on the in-process index, and the listing-fingerprints records behind it."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import numpy as np

from inference.serving.fingerprint import Fingerprint
from schemas import codec
from schemas.records import SCHEMA_VERSION, ListingFingerprint
from streams.worker.integrity import (
    Checked,
    IntegrityChecker,
    IntegrityConfig,
    IntegrityView,
    Listing,
)


def _print(seed: int, embedding_axis: int = 0) -> Fingerprint:
    """A photo's fingerprint: random hashes, a one-hot embedding."""
    rng = np.random.default_rng(seed)
    hashes = [int(x) for x in rng.integers(0, 2**63, size=27, dtype=np.int64)]
    emb = np.zeros(8, np.float16)
    emb[embedding_axis] = 1
    return Fingerprint(hashes[0], hashes[1], tuple(hashes[2:]), emb)


def _listing(pid: str, seller: str | None, sha: str, fp: Fingerprint | None) -> Listing:
    return Listing(pid, seller, sha, "v1", fp, event_id=f"ev-{pid}")


PHOTO = _print(1)
NEAR = Fingerprint(PHOTO.phash ^ 0b101, PHOTO.mirror, (), PHOTO.embedding)  # 2 bits off
LOOKALIKE = Fingerprint(PHOTO.phash ^ 0b11, PHOTO.mirror, (), _print(2, 1).embedding)


async def _first_batches(checker: IntegrityChecker) -> list[tuple[bytes, bytes]]:
    """The scenario's first batch; returns the records it would produce."""
    first = await checker.check(
        [
            _listing("a-1", "A", "a" * 64, PHOTO),
            _listing("b-1", "B", "a" * 64, PHOTO),
            _listing("b-2", "B", "b" * 64, NEAR),
            _listing("c-1", "C", "c" * 64, LOOKALIKE),
            _listing("x-1", None, "a" * 64, PHOTO),
        ]
    )
    dups = [c.duplicate_of for c in first]
    assert dups[0] is None
    assert dups[1] is not None
    assert (dups[1].product_id, dups[1].match) == ("a-1", "exact")
    assert dups[2] is not None
    assert (dups[2].product_id, dups[2].match, dups[2].hamming) == ("a-1", "near", 2)
    assert dups[3] is None, "hash close, embedding not: a different photo"
    assert dups[4] is None, "no seller: not checked"
    assert first[4].record is None, "nor remembered"
    return [c.record for c in first if c.record is not None]


async def _later_batch(checker: IntegrityChecker) -> None:
    """A later batch: a relisting of one's own photo is not flagged; cache hits are."""
    later = await checker.check(
        [
            _listing("a-2", "A", "a" * 64, None),
            _listing("d-1", "D", "b" * 64, None),
            _listing("d-2", "D", "d" * 64, NEAR),
        ]
    )
    dups = [c.duplicate_of for c in later]
    assert dups[0] is None
    assert later[0].record is None, "A's first listing of the photo is known"
    assert dups[1] is not None
    assert (dups[1].product_id, dups[1].seller_id) == ("b-2", "B"), "by its indexed print"
    assert dups[2] is not None
    assert (dups[2].product_id, dups[2].hamming) == ("b-2", 0), "the nearest"
    assert dups[2].match == "near"


def test_checker_orders_batches_and_records_and_spares_the_first_seller() -> None:
    async def run() -> None:
        checker = IntegrityChecker(IntegrityConfig())
        records = await _first_batches(checker)
        # One record per new (photo, seller): A and B of photo a, B of b, C of c.
        keys = [k.decode() for k, _ in records]
        assert keys == ["a" * 64 + "|A", "a" * 64 + "|B", "b" * 64 + "|B", "c" * 64 + "|C"]
        await _later_batch(checker)

    asyncio.run(run())


def test_a_view_rebuilt_from_the_records_checks_as_the_worker_did() -> None:
    """Principle 1: the index is a view of listing-fingerprints (a restart, a new worker)."""

    async def run() -> None:
        records = await _first_batches(IntegrityChecker(IntegrityConfig()))
        view = IntegrityView()
        # Read twice (a compaction duplicate, or a worker's own records read back).
        view.apply(records + records)
        assert len(view) == 3
        assert view.index.listings == 4
        await _later_batch(IntegrityChecker(IntegrityConfig(), view))

    asyncio.run(run())


def test_records_round_trip_the_fingerprint() -> None:
    async def run() -> None:
        checker = IntegrityChecker(IntegrityConfig())
        [got] = await checker.check([_listing("a-1", "A", "a" * 64, PHOTO)])
        assert got.record is not None
        key, value = got.record
        rec = codec.decode_listing_fingerprint(value)
        assert key == b"a" * 64 + b"|A"
        assert (rec.product_id, rec.seller_id, rec.event_id) == ("a-1", "A", "ev-a-1")
        assert rec.fingerprint is not None
        assert (rec.fingerprint.phash, rec.fingerprint.crops) == (PHOTO.phash, PHOTO.crops)
        assert rec.fingerprint.embedding_f16_b64 is not None
        emb = np.frombuffer(base64.b64decode(rec.fingerprint.embedding_f16_b64), "<f2")
        assert np.array_equal(emb, PHOTO.embedding)

    asyncio.run(run())


def test_tombstones_and_malformed_records_are_skipped() -> None:
    good = ListingFingerprint(
        schema_version=SCHEMA_VERSION,
        event_id="e",
        occurred_at=datetime.now(UTC),
        image_sha256="e" * 64,
        seller_id="E",
        product_id="e-1",
        listed_at_ms=5,
        model_version="v1",
    )
    bad_embedding = codec.encode(good).replace(
        b'"fingerprint":null', b'"fingerprint":{"phash":1,"mirror":2,"embedding_f16_b64":"AA=="}'
    )
    view = IntegrityView()
    view.apply(
        [
            (b"k", None),
            (b"k", b"not json"),
            (b"k", b'{"schema_version": 1}'),
            (b"k", bad_embedding),
            (b"k", codec.encode(good)),
        ]
    )
    assert len(view) == 1
    assert [o.product_id for o in view.index.owners("e" * 64)] == ["e-1"]
    assert view.index.print_of("e" * 64) is None


def test_checks_wait_until_the_view_has_loaded() -> None:
    async def run() -> None:
        loaded = asyncio.Event()
        checker = IntegrityChecker(IntegrityConfig(), loaded=loaded)
        task = asyncio.ensure_future(checker.check([_listing("a-1", "A", "a" * 64, PHOTO)]))
        await asyncio.sleep(0.05)
        assert not task.done()
        loaded.set()
        [got] = await task
        assert got.record is not None

    asyncio.run(run())


def test_listings_without_a_seller_do_not_wait_for_the_view() -> None:
    async def run() -> None:
        checker = IntegrityChecker(IntegrityConfig(), loaded=asyncio.Event())  # never set
        got = await asyncio.wait_for(checker.check([_listing("x", None, "a" * 64, PHOTO)]), 1)
        assert got == [Checked()]

    asyncio.run(run())


def test_a_pair_a_reviewer_dismissed_is_not_flagged_again() -> None:
    dismissed = {("a-1", "b-1"), ("a-1", "b-2")}

    async def run() -> list[Checked]:
        checker = IntegrityChecker(
            IntegrityConfig(), dismissed=lambda p, q: (p, q) in dismissed or (q, p) in dismissed
        )
        return await checker.check(
            [
                _listing("a-1", "A", "a" * 64, PHOTO),
                _listing("b-1", "B", "a" * 64, PHOTO),  # exact copy of a-1: dismissed
                _listing("b-2", "B", "b" * 64, NEAR),  # near copy of a-1: dismissed
                _listing("e-1", "E", "a" * 64, PHOTO),  # exact copy of a-1: not dismissed
            ]
        )

    original, exact, near, third = asyncio.run(run())
    assert original.duplicate_of is None
    assert exact.duplicate_of is None
    assert near.duplicate_of is None
    assert third.duplicate_of is not None
    assert (third.duplicate_of.product_id, third.duplicate_of.match) == ("a-1", "exact")
