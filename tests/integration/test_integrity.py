"""Integrity flags end to end: a real worker process on the stack's real Kafka and Redis.

Seller A lists a photo; seller B then lists it unchanged, re-encoded at JPEG
quality 60, resized to 70%, cropped by 10% and mirrored: each of B's listings is
flagged (duplicate_image for the identical file, near_duplicate for the others)
and names A's product. A's second listing of its own photo, and two different
photos of the same product by two sellers, are not flagged. A banana declared
``dairy`` is flagged category_mismatch. Exactly the flagged listings reach
listing-review.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from kafka import KafkaProducer

from inference.serving.duplicates import lookup_bands
from inference.serving.fingerprint import Fingerprint
from schemas import codec
from schemas.records import SCHEMA_VERSION, ProductImageEvent, ProductLabelled
from streams.worker.cache import LabelCache
from streams.worker.integrity import IntegrityChecker, IntegrityConfig, Listing
from tests.conftest import LocalStack, Topics, consume

pytestmark = pytest.mark.integration

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dataset"


def _jpeg(img: Any, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf.tobytes())


def copies(data: bytes) -> dict[str, bytes]:
    """The photo as another seller would re-upload it."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    ch, cw = int(h * 0.9), int(w * 0.9)
    return {
        "same": data,
        "q60": _jpeg(img, 60),
        "resized70": _jpeg(cv2.resize(img, (int(w * 0.7), int(h * 0.7)), cv2.INTER_AREA)),
        # 10% off, not centred: 7% from the top and left, 3% from the bottom and right.
        "cropped10": _jpeg(
            img[int(h * 0.07) : int(h * 0.07) + ch, int(w * 0.07) : int(w * 0.07) + cw]
        ),
        "mirrored": _jpeg(np.ascontiguousarray(img[:, ::-1])),
    }


def listing(
    product_id: str, seller_id: str, image: bytes, declared_category: str | None = None
) -> tuple[bytes, bytes]:
    ev = ProductImageEvent(
        schema_version=SCHEMA_VERSION,
        event_id=f"ev-{product_id}",
        occurred_at=datetime.now(UTC),
        product_id=product_id,
        seller_id=seller_id,
        declared_category=declared_category,
        image_b64=base64.b64encode(image).decode(),
    )
    return product_id.encode(), codec.encode(ev)


def send(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def labelled(topics: Topics, expect: int) -> dict[str, ProductLabelled]:
    out = consume(topics.bootstrap, topics.product_labels, expect=expect, timeout_s=180)
    return {lab.product_id: lab for lab in (codec.decode_product_labelled(r.value) for r in out)}


def test_copies_by_another_seller_are_flagged_with_the_original(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker = worker_factory().start()
    tag = uuid.uuid4().hex[:6]
    milk = (PHOTOS / "Oatly-Oat-Milk" / "Oatly-Oat-Milk_014.jpg").read_bytes()
    banana_a = (PHOTOS / "Banana" / "Banana_006.jpg").read_bytes()
    banana_b = (PHOTOS / "Banana" / "Banana_014.jpg").read_bytes()
    first = [
        listing(f"a-milk-{tag}", f"seller-a-{tag}", milk),
        listing(f"c-banana-{tag}", f"seller-c-{tag}", banana_a, declared_category="produce"),
    ]
    send(producer, topics.product_images, first)
    labels = labelled(topics, len(first))
    assert len(labels) == len(first), worker.tail()

    later = [
        listing(f"b-{name}-{tag}", f"seller-b-{tag}", data) for name, data in copies(milk).items()
    ]
    later += [
        listing(f"a-milk-again-{tag}", f"seller-a-{tag}", milk),  # the same seller again
        listing(f"d-banana-{tag}", f"seller-d-{tag}", banana_b),  # another photo, same product
    ]
    send(producer, topics.product_images, later)
    labels = labelled(topics, len(first) + len(later))
    assert len(labels) == len(first) + len(later), worker.tail()
    # Only after D's: listings with other keys may be read from other partitions in
    # any order, and the second of two identical files is the duplicate.
    last = [listing(f"e-banana-{tag}", f"seller-e-{tag}", banana_b, declared_category="dairy")]
    send(producer, topics.product_images, last)
    total = len(first) + len(later) + len(last)
    labels = labelled(topics, total)
    assert len(labels) == total, worker.tail()

    for name in ("same", "q60", "resized70", "cropped10", "mirrored"):
        lab = labels[f"b-{name}-{tag}"]
        flag = "duplicate_image" if name == "same" else "near_duplicate"
        assert flag in lab.flags, (name, lab.flags, lab.duplicate_of)
        dup = lab.duplicate_of
        assert dup is not None
        assert (dup.product_id, dup.seller_id) == (f"a-milk-{tag}", f"seller-a-{tag}"), name
        assert dup.match == ("exact" if name == "same" else "near")
        assert lab.seller_id == f"seller-b-{tag}"
    assert labels[f"b-same-{tag}"].cached, "an identical file is a cache hit, and still flagged"

    clean = [f"a-milk-{tag}", f"a-milk-again-{tag}", f"c-banana-{tag}", f"d-banana-{tag}"]
    for pid in clean:
        assert not {"duplicate_image", "near_duplicate", "category_mismatch"} & set(
            labels[pid].flags
        ), (pid, labels[pid].flags, labels[pid].duplicate_of)
        assert labels[pid].duplicate_of is None

    mismatch = labels[f"e-banana-{tag}"]
    assert mismatch.category == "produce"
    assert "category_mismatch" in mismatch.flags, (mismatch.category_score, mismatch.flags)
    assert mismatch.declared_category == "dairy"
    # Listed after seller D's identical file: also a duplicate of D's listing.
    assert mismatch.duplicate_of is not None
    assert mismatch.duplicate_of.product_id == f"d-banana-{tag}"

    flagged = {f"b-{n}-{tag}" for n in copies(milk)} | {f"e-banana-{tag}"}
    review = consume(topics.bootstrap, topics.listing_review, expect=len(flagged), timeout_s=60)
    assert {r.key.decode() for r in review} == flagged
    assert len(review) == len(flagged)
    metrics = worker.metrics()
    assert 'vitrine_integrity_flags_total{flag="near_duplicate"} 4.0' in metrics
    assert 'vitrine_integrity_flags_total{flag="category_mismatch"} 1.0' in metrics


# --- the checker alone, on the stack's real Redis ------------------------------------


def _print(seed: int, embedding_axis: int = 0) -> Fingerprint:
    """A photo's fingerprint: random hashes, a one-hot embedding."""
    rng = np.random.default_rng(seed)
    hashes = [int(x) for x in rng.integers(0, 2**63, size=27, dtype=np.int64)]
    emb = np.zeros(8, np.float16)
    emb[embedding_axis] = 1
    return Fingerprint(hashes[0], hashes[1], tuple(hashes[2:]), emb)


def _listing(pid: str, seller: str | None, sha: str, fp: Fingerprint | None) -> Listing:
    return Listing(pid, seller, sha, "v1", fp)


def test_checker_orders_batches_and_records_and_spares_the_first_seller(
    kafka_stack: LocalStack,
) -> None:
    async def run() -> None:
        cache = LabelCache(
            kafka_stack.redis_url, ttl_s=600, timeout_ms=2000, prefix=f"t-{uuid.uuid4().hex[:8]}"
        )
        checker = IntegrityChecker(cache, IntegrityConfig(ttl_s=600))
        photo = _print(1)
        near = Fingerprint(photo.phash ^ 0b101, photo.mirror, (), photo.embedding)  # 2 bits off
        lookalike = Fingerprint(photo.phash ^ 0b11, photo.mirror, (), _print(2, 1).embedding)
        try:
            # One batch: A first, then B's copy and B's near copy of it, a look-alike
            # whose embedding disagrees, and a listing with no seller.
            first = await checker.check(
                [
                    _listing("a-1", "A", "a" * 64, photo),
                    _listing("b-1", "B", "a" * 64, photo),
                    _listing("b-2", "B", "b" * 64, near),
                    _listing("c-1", "C", "c" * 64, lookalike),
                    _listing("x-1", None, "a" * 64, photo),
                ]
            )
            assert first[0] is None
            assert first[1] is not None
            assert (first[1].product_id, first[1].match) == ("a-1", "exact")
            assert first[2] is not None
            assert (first[2].product_id, first[2].match, first[2].hamming) == ("a-1", "near", 2)
            assert first[3] is None, "hash close, embedding not: a different photo"
            assert first[4] is None, "no seller: not checked"
            # A stranger's member in a band set the lookup reads is skipped.
            band, value = sorted(lookup_bands(near))[0]
            await cache.pipelined(
                "test", lambda pipe: pipe.sadd(f"{cache.prefix}:phb:{band}:{value:04x}", "junk")
            )
            # A later batch: found through Redis. A relisting its own photo is not
            # flagged; D's cache hit (no fingerprint at hand) is, by its stored print.
            later = await checker.check(
                [
                    _listing("a-2", "A", "a" * 64, None),
                    _listing("d-1", "D", "b" * 64, None),
                    _listing("d-2", "D", "d" * 64, near),
                ]
            )
            assert later[0] is None
            assert later[1] is not None
            assert (later[1].product_id, later[1].seller_id) == ("b-2", "B")
            assert later[2] is not None
            assert (later[2].product_id, later[2].hamming) == ("b-2", 0), "the nearest"
            assert later[2].match == "near"
        finally:
            await cache.close()
        down = LabelCache("redis://127.0.0.1:1/0", ttl_s=600, timeout_ms=200)
        try:
            skipped = await IntegrityChecker(down, IntegrityConfig()).check(
                [_listing("b-1", "B", "a" * 64, photo)]
            )
            assert skipped == [None], "Redis down: not checked, no crash"
        finally:
            await down.close()

    asyncio.run(run())
