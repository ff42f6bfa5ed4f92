"""Reviewers' corrections flow back: orders, the same photo listed again, a lost Redis, export."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from schemas import codec
from schemas.corrections import correction_key
from schemas.deadletter import decode_headers
from schemas.records import SCHEMA_VERSION, EnrichedItem, LabelCorrection, ProductLabelled
from streams.settings import KafkaSettings, TopicSettings
from streams.tools.corrections import run_export
from streams.worker.state import ProductState, decode_product_state
from tests.conftest import LocalStack, Topics, consume, make_topics
from tests.events import listing, order, photo_bytes
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def topics(kafka_stack: LocalStack) -> Topics:
    """This module's topics, the records compacted as in production (worker_factory uses it)."""
    return make_topics(
        kafka_stack, compacted=("product_labels", "orders_enriched", "label_corrections")
    )


def _send(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def _labels(topics: Topics, product_id: str, event_id: str | None = None) -> ProductLabelled:
    """The product's label (with ``event_id``, if given), once it is on product-labels."""
    found: list[ProductLabelled] = []

    def check() -> bool:
        out = consume(topics.bootstrap, topics.product_labels, expect=1000, timeout_s=1)
        labels = [codec.decode_product_labelled(r.value) for r in out]
        found[:] = [
            lab
            for lab in labels
            if lab.product_id == product_id and event_id in (None, lab.event_id)
        ]
        return bool(found)

    wait_until(check, f"a label of {product_id}", timeout_s=120)
    assert len({lab.event_id for lab in found}) == 1, found
    return found[0]


def _items(topics: Topics, order_id: str) -> dict[str, EnrichedItem]:
    """The lines of an order, once it is on orders-enriched."""
    found: list[EnrichedItem] = []

    def check() -> bool:
        out = consume(topics.bootstrap, topics.orders_enriched, expect=1000, timeout_s=1)
        orders = [codec.decode_enriched_order(r.value) for r in out]
        found[:] = next((o.items for o in orders if o.order_id == order_id), ())
        return bool(found)

    wait_until(check, f"order {order_id} enriched", timeout_s=120)
    return {it.product_id: it for it in found}


def _state(client: redis.Redis, topics: Topics, product_id: str) -> ProductState | None:
    raw = client.get(f"{topics.key_prefix}:product:{product_id}")
    return None if raw is None else decode_product_state(raw)


def test_a_correction_reaches_orders_and_relistings_and_survives_a_lost_redis(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, tmp_path: Path
) -> None:
    worker = worker_factory(VITRINE_ORDER_LABEL_WAIT_MS="300").start()
    banana = dict(photo_bytes())["Banana"]
    p1, p2, p3 = (f"cor-{topics.suffix}-{i}" for i in (1, 2, 3))
    _send(producer, topics.product_images, [listing(p1, banana, seller_id="s1")])
    first = _labels(topics, p1)
    assert first.corrected_by is None, worker.tail()
    category = "dairy" if first.category != "dairy" else "beverages"  # not the model's

    correction = LabelCorrection(
        schema_version=SCHEMA_VERSION,
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        product_id=p1,
        image_sha256=hashlib.sha256(banana).hexdigest(),
        decision="relabel",
        category=category,
        label="Plantain",
        reviewer="rev-7",
        model_name=first.model_name,
        model_version=first.model_version,
        source_flags=first.flags,
    )
    # A value that is no decision first: dead-lettered with its reason, the next applied.
    bad_key = f"bad-{topics.suffix}".encode()
    _send(
        producer,
        topics.label_corrections,
        [
            (bad_key, b'{"decision": "relabel"}'),
            (correction_key(correction).encode(), codec.encode(correction)),
        ],
    )
    (dead,) = consume(topics.bootstrap, topics.label_corrections_dlq, expect=1, timeout_s=60)
    letter = decode_headers(dead.headers)
    assert (dead.key, dead.value) == (bad_key, b'{"decision": "relabel"}')
    assert letter.error_code.startswith("schema."), letter
    assert letter.source_topic == topics.label_corrections
    with redis.Redis.from_url(topics.redis_url) as client:
        wait_until(
            lambda: (st := _state(client, topics, p1)) is not None and st.corrected_by == "rev-7",
            "the product view to take the correction",
            timeout_s=10,
        )
    corrected = _labels(topics, p1, event_id=correction.event_id)
    assert (corrected.category, corrected.corrected_by) == (category, "rev-7")
    assert corrected.correction_id == correction.event_id
    _send(producer, topics.orders, [order(f"o1-{topics.suffix}", [(p1, 2, 0.5)])])
    item = _items(topics, f"o1-{topics.suffix}")[p1]
    assert (item.category, item.category_status) == (category, "corrected")

    # The same photo listed again, under another product: the reviewer's label.
    _send(producer, topics.product_images, [listing(p2, banana, seller_id="s1")])
    again = _labels(topics, p2)
    assert (again.labels[0].label, again.category) == ("Plantain", category)
    assert (again.corrected_by, again.correction_id) == ("rev-7", correction.event_id)
    assert again.cached, "the model's result came from the cache"

    # Redis loses everything of this worker's; the worker restarts.
    worker.stop()
    with redis.Redis.from_url(topics.redis_url) as client:
        keys = list(client.scan_iter(f"{topics.key_prefix}:*", count=1000))
        assert keys
        client.delete(*keys)
    worker.start()
    _send(producer, topics.product_images, [listing(p3, banana, seller_id="s1")])
    third = _labels(topics, p3)
    assert (third.category, third.corrected_by) == (category, "rev-7")
    assert not third.cached, "inferred again: the cache was lost, the correction was not"
    _send(producer, topics.orders, [order(f"o2-{topics.suffix}", [(p1, 1, 0.5), (p2, 1, 0.5)])])
    items = _items(topics, f"o2-{topics.suffix}")
    assert {p: (it.category, it.category_status) for p, it in items.items()} == {
        p1: (category, "corrected"),
        p2: (category, "corrected"),
    }

    # The corrected photo, exported for the next training run.
    s = topics.settings(
        kafka=KafkaSettings(bootstrap_servers=topics.bootstrap),
        topics=TopicSettings(
            label_corrections=topics.label_corrections, product_images=topics.product_images
        ),
    )
    result = run_export(s, tmp_path / "export", timeout_s=60, say=lambda _m: None)
    assert (result.corrected, result.written) == (1, 1)
    assert (tmp_path / "export" / "Plantain" / f"{correction.image_sha256}.jpg").exists()
