"""Integrity flags end to end: a real worker process on the stack's real Kafka and Redis.

Seller A lists a photo; seller B then lists it unchanged, re-encoded at JPEG
quality 60, resized to 70%, cropped by 10% and mirrored: each of B's listings is
flagged (duplicate_image for the identical file, near_duplicate for the others)
and names A's product. A's second listing of its own photo, and two different
photos of the same product by two sellers, are not flagged. A banana declared
``dairy`` is flagged category_mismatch. Exactly the flagged listings reach
listing-review.

Then the integrity state survives Redis: a photo listed by one worker, Redis
restarted empty and the worker restarted, a copy by another seller (and a
cropped one) is still flagged with the first seller's product.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from kafka import KafkaProducer
from redis import Redis

from schemas import codec
from schemas.records import SCHEMA_VERSION, ProductImageEvent, ProductLabelled
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess
from tests.compaction import force_compaction
from tests.conftest import LocalStack, Topics, consume, make_topics

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


# --- the state is Kafka's: Redis emptied and the worker restarted ---------------------


def test_copies_are_still_flagged_after_redis_is_emptied_and_the_worker_restarts(
    private_stack: LocalStack, tmp_path: Path
) -> None:
    """Principle 1: the integrity index is rebuilt from listing-fingerprints, not Redis.

    The topic is compacted as in production, and the log cleaner is made to run
    on it before the index is rebuilt.
    """
    topics = make_topics(private_stack, compacted=("listing_fingerprints",))
    tag = uuid.uuid4().hex[:6]
    milk = (PHOTOS / "Oatly-Oat-Milk" / "Oatly-Oat-Milk_014.jpg").read_bytes()
    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", linger_ms=5)
    workers: list[WorkerProcess] = []

    def worker() -> WorkerProcess:
        w = WorkerProcess(
            topics.env(), tmp_path / f"w{len(workers)}.log", web_port=free_ports(1)[0]
        )
        workers.append(w)
        return w.start()

    try:
        first = worker()
        send(producer, topics.product_images, [listing(f"a-milk-{tag}", f"seller-a-{tag}", milk)])
        assert len(labelled(topics, 1)) == 1, first.tail()
        records = consume(topics.bootstrap, topics.listing_fingerprints, expect=1, timeout_s=60)
        assert [r.key for r in records] == [
            f"{hashlib.sha256(milk).hexdigest()}|seller-a-{tag}".encode()
        ]
        redis = Redis.from_url(topics.redis_url)
        assert not [
            k
            for k in redis.scan_iter(f"test-{topics.suffix}:*")
            if b":fp:" in k or b":phb:" in k or b":sellers:" in k
        ]
        first.stop(timeout_s=60)
        # The record again, as an at-least-once redelivery writes it: the cleaner
        # keeps one of the two.
        for rec in records:
            producer.send(topics.listing_fingerprints, key=rec.key, value=rec.value)
        producer.flush()
        assert force_compaction(topics.bootstrap, topics.listing_fingerprints).removed >= 1
        stack = private_stack.stack
        stack.stop_redis()
        stack.start_redis()
        stack.wait_redis(time.monotonic() + 30)
        assert redis.dbsize() == 0, "restarted empty"

        second = worker()
        later = [
            listing(f"b-same-{tag}", f"seller-b-{tag}", milk),
            listing(f"b-cropped-{tag}", f"seller-b-{tag}", copies(milk)["cropped10"]),
        ]
        send(producer, topics.product_images, later)
        labels = labelled(topics, 3)
        assert len(labels) == 3, second.tail()
        for name, match in (("same", "exact"), ("cropped", "near")):
            lab = labels[f"b-{name}-{tag}"]
            assert lab.duplicate_of is not None, (name, lab.flags, second.tail())
            assert (lab.duplicate_of.product_id, lab.duplicate_of.match) == (f"a-milk-{tag}", match)
        assert not labels[f"b-same-{tag}"].cached, "Redis forgot the label: inferred again"
        assert 'vitrine_follower_caught_up{view="integrity"} 1.0' in second.metrics()
    finally:
        producer.close()
        for w in workers:
            w.kill()
