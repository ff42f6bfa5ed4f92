"""The record topics of the Redis views survive Kafka's log cleaner.

product-labels and orders-enriched are compacted (``streams/tools/stack.py``).
After the cleaner has run on both, the views rebuilt from them hold every
product's latest category and the same co-purchases as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from streams.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from streams.tools.rebuild import rebuild_views
from tests.compaction import force_compaction
from tests.conftest import LocalStack, Topics, consume, make_topics
from tests.events import listing, order, photo_bytes
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRODUCTS = {"lemon": "Lemon", "lime": "Lime", "cucumber": "Cucumber", "banana": "Banana"}


def _metric(worker: Any, name: str) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _views(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every product state and bought-together set under ``prefix``."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}:product:*", count=1000):
        out[key.decode()] = client.get(key)
    for key in client.scan_iter(f"{prefix}:rec:*", count=1000):
        out[key.decode()] = [
            (m.decode(), round(s, 6)) for m, s in client.zrange(key, 0, -1, withscores=True)
        ]
    return out


def _one_per_partition(tag: str, partitions: int) -> list[str]:
    """Order ids whose records land one in each partition (the default partitioner)."""
    ids: dict[int, str] = {}
    i = 0
    while len(ids) < partitions:
        oid = f"last-{tag}-{i}"
        ids.setdefault((murmur2(oid.encode()) & 0x7FFFFFFF) % partitions, oid)
        i += 1
    return list(ids.values())


@pytest.fixture
def topics(kafka_stack: LocalStack) -> Topics:
    """This module's topics, the records compacted as in production (worker_factory uses it)."""
    return make_topics(kafka_stack, compacted=("product_labels", "orders_enriched"))


def test_views_rebuilt_from_compacted_topics_are_the_views_of_before(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker = worker_factory(VITRINE_ORDER_LABEL_WAIT_MS="2000").start()
    photos = dict(photo_bytes())
    pid = {name: f"vc-{topics.suffix}-{name}" for name in PRODUCTS}
    # Each product listed three times (relisted with other photos): the cleaner
    # keeps the last label of each.
    names = list(PRODUCTS)
    msgs = [
        listing(pid[n], photos[PRODUCTS[names[(k + j) % len(names)]]])
        for j in range(3)
        for k, n in enumerate(names)
    ]
    for key, value in msgs:
        producer.send(topics.product_images, key=key, value=value)
    producer.flush()
    consume(topics.bootstrap, topics.product_labels, expect=len(msgs), timeout_s=120)
    sold = [order(f"vc-{i}", [(pid["lemon"], 1, 0.5), (pid["lime"], 1, 0.4)]) for i in range(12)]
    sold += [
        order(f"vc-c{i}", [(pid["cucumber"], 1, 1.0), (pid["banana"], 2, 0.3)]) for i in range(6)
    ]
    # Single-line orders last in every partition: force_compaction appends a copy
    # of each partition's last record, which then counts twice (no pairs here).
    sold += [order(oid, [(pid["banana"], 1, 0.3)]) for oid in _one_per_partition(topics.suffix, 2)]
    for key, value in sold:
        producer.send(topics.orders, key=key, value=value)
    producer.flush()
    applied = f'vitrine_view_records_applied_total{{topic="{topics.orders_enriched}"}}'
    wait_until(lambda: _metric(worker, applied) >= len(sold), "every order counted", 120)
    prefix = f"test-{topics.suffix}"
    with redis.Redis.from_url(topics.redis_url) as client:
        wait_until(
            lambda: len([k for k in _views(client, prefix) if ":product:" in k]) == len(PRODUCTS),
            "every product in the view",
        )
        before = _views(client, prefix)
    worker.stop()

    removed = {t: force_compaction(topics.bootstrap, t).removed
               for t in (topics.product_labels, topics.orders_enriched)}  # fmt: skip
    assert removed[topics.product_labels] > 0, removed

    s = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=topics.bootstrap, app_id=f"vitrine-test-{topics.suffix}"
        ),
        redis=RedisSettings(url=topics.redis_url, key_prefix=prefix, timeout_ms=5000),
        topics=TopicSettings(
            product_labels=topics.product_labels, orders_enriched=topics.orders_enriched
        ),
    )
    asyncio.run(rebuild_views(s, reset=True, say=lambda _m: None))
    with redis.Redis.from_url(topics.redis_url) as client:
        after = _views(client, prefix)
    assert after == before
