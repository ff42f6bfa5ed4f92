"""``vitrine rebuild`` and ``vitrine bench rebuild`` on real Kafka and Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis

from schemas import codec
from streams.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from streams.tools.rebuild import _label, bench_rebuild, rebuild_views
from streams.tools.stack import create_topics
from streams.worker.state import decode_product_state
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration


def test_bench_rebuild_reports_both_rates_and_the_bytes_per_product(
    kafka_stack: LocalStack,
) -> None:
    s = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_stack.bootstrap),
        # 5 s, not the worker's 250 ms: a loaded test machine is no outage here
        # (a connect timed out once in a CI run with four test processes).
        redis=RedisSettings(url=kafka_stack.redis_url, timeout_ms=5000),
        topics=TopicSettings(partitions=2),
    )
    out = bench_rebuild(s, n_products=5000, say=lambda _m: None)
    assert out["rebuild"]["records"] == 5000
    assert out["plain_writes"]["per_s"] > 0
    assert out["rebuild"]["per_s"] > 0
    assert out["rebuild_vs_plain"] > 0
    # The budget: at most 1.5 KB of Redis state per listing.
    assert 0 < out["redis_bytes_per_product"]["view"] <= 1536
    with redis.Redis.from_url(kafka_stack.redis_url) as client:
        left = [
            k
            for pattern in ("bench-*-plain:*", "bench-*-view:*")
            for k in client.scan_iter(pattern, count=1000)
        ]
        assert left == [], "the bench cleans up"


def test_rebuild_with_reset_replaces_a_wrong_view_with_the_record(
    kafka_stack: LocalStack,
) -> None:
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_stack.bootstrap, app_id=f"rb-{tag}"),
        redis=RedisSettings(url=kafka_stack.redis_url, key_prefix=f"rb-{tag}", timeout_ms=5000),
        topics=TopicSettings(
            product_labels=f"product-labels-rb-{tag}",
            orders_enriched=f"orders-enriched-rb-{tag}",
            partitions=2,
        ),
    )
    create_topics(kafka_stack.bootstrap, {s.topics.product_labels: 2, s.topics.orders_enriched: 2})
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_stack.bootstrap)
    now = datetime.now(UTC)
    labels = [_label(i, tag, now) for i in range(30)]
    for lab in labels:
        producer.send(s.topics.product_labels, key=lab.product_id.encode(), value=codec.encode(lab))
    producer.flush()
    producer.close()
    with redis.Redis.from_url(kafka_stack.redis_url) as client:
        # A view left wrong by hand (or by an older version): --reset drops it.
        client.set(f"rb-{tag}:product:{labels[0].product_id}", b"not a state")
        client.hset(f"rb-{tag}:views:offsets", f"{s.topics.product_labels}:0", 10**6)
        result = asyncio.run(rebuild_views(s, reset=True, say=lambda _m: None))
        assert result.records == 30
        for lab in labels:
            state = decode_product_state(client.get(f"rb-{tag}:product:{lab.product_id}") or b"")
            assert state is not None
            assert state.category == lab.category
        # Run again without --reset: everything is covered, nothing to apply.
        again = asyncio.run(rebuild_views(s, say=lambda _m: None))
        assert again.records == 0
