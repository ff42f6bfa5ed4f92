"""Disguised copies end to end: a real worker process on the stack's real Kafka and Redis.

Seller A lists a photo; seller B lists it with a white border and rotated by 8
degrees; seller D lists another photo of the same product. Each of B's
listings is flagged ``near_duplicate`` naming A's product, with the evidence of
the step that matched (inliers of the local features); D's is not flagged.
A copy cropped by 25% is a known gap at the default thresholds (about a quarter
caught on val: docs/integrity/duplicates.md), held as a strict xfail.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from inference.training.disguises import transform
from schemas.records import ProductLabelled
from tests.conftest import Topics
from tests.integration.test_integrity import labelled, listing, send

pytestmark = pytest.mark.integration

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dataset"


def _run(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, disguises: tuple[str, ...]
) -> tuple[str, dict[str, ProductLabelled]]:
    """A's photo, then B's disguised copies of it and D's other photo of the product."""
    worker = worker_factory().start()
    tag = uuid.uuid4().hex[:6]
    milk = sorted((PHOTOS / "Oatly-Oat-Milk").glob("*.jpg"))
    original, other = milk[2].read_bytes(), milk[3].read_bytes()
    send(producer, topics.product_images, [listing(f"a-milk-{tag}", f"seller-a-{tag}", original)])
    assert len(labelled(topics, 1)) == 1, worker.tail()
    rng = random.Random(5)
    later = [
        listing(f"b-{name}-{tag}", f"seller-b-{tag}", transform(original, name, rng))
        for name in disguises
    ]
    later.append(listing(f"d-milk-{tag}", f"seller-d-{tag}", other))
    send(producer, topics.product_images, later)
    labels = labelled(topics, 1 + len(later))
    assert len(labels) == 1 + len(later), worker.tail()
    return tag, labels


def _assert_flagged(tag: str, labels: dict[str, ProductLabelled], name: str) -> None:
    lab = labels[f"b-{name}-{tag}"]
    assert "near_duplicate" in lab.flags, (name, lab.flags, lab.duplicate_of)
    dup = lab.duplicate_of
    assert dup is not None
    assert (dup.product_id, dup.seller_id) == (f"a-milk-{tag}", f"seller-a-{tag}"), name
    assert dup.match == "near"
    assert dup.inliers is not None, name
    assert dup.accepted_by in ("hash", "features"), name


def test_a_border_and_a_rotation_are_flagged_and_another_shot_is_not(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    tag, labels = _run(topics, worker_factory, producer, ("border_white_20", "rotated_8"))
    for name in ("border_white_20", "rotated_8"):
        _assert_flagged(tag, labels, name)
    clean = labels[f"d-milk-{tag}"]
    assert clean.duplicate_of is None, clean.duplicate_of
    assert "near_duplicate" not in clean.flags


@pytest.mark.xfail(
    strict=True,
    reason="a 25% crop has fewer inliers than the default threshold (64) demands; 24% of"
    " them are caught on val (docs/integrity/duplicates.md)",
)
def test_a_25_percent_crop_is_flagged(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    tag, labels = _run(topics, worker_factory, producer, ("cropped_25",))
    _assert_flagged(tag, labels, "cropped_25")
