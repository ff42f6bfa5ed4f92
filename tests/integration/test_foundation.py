"""The foundation works against real servers: a Faust agent, Redis, the stack's status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from streams.tools.stack import create_topics, free_ports
from tests.conftest import ROOT, LocalStack, consume

pytestmark = pytest.mark.integration


def test_stack_status_reports_both_servers_up(kafka_stack: LocalStack) -> None:
    states = {s.name: s for s in kafka_stack.stack.status()}
    assert states["kafka"].running
    assert states["redis"].running
    assert states["kafka"].address.endswith(str(kafka_stack.stack.local.kafka_port))


def test_stack_up_is_idempotent(kafka_stack: LocalStack) -> None:
    pids = {s.name: s.pid for s in kafka_stack.stack.status()}
    kafka_stack.stack.up(timeout_s=30, create_topics=False)
    assert {s.name: s.pid for s in kafka_stack.stack.status()} == pids


def test_redis_write_and_read(kafka_stack: LocalStack) -> None:
    client = redis.Redis.from_url(kafka_stack.redis_url)
    key = f"vitrine-test:{uuid.uuid4().hex}"
    client.set(key, b"banana", ex=60)
    assert client.get(key) == b"banana"
    assert client.ttl(key) > 0
    client.close()


def test_faust_agent_consumes_and_produces(kafka_stack: LocalStack, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    src, dst = f"echo-in-{suffix}", f"echo-out-{suffix}"
    create_topics(kafka_stack.bootstrap, {src: 2, dst: 2})
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_stack.bootstrap, acks="all")
    for i in range(20):
        producer.send(src, key=f"k{i}".encode(), value=f"value-{i}".encode())
    producer.flush()
    producer.close()

    env = dict(
        os.environ,
        ECHO_BOOTSTRAP=kafka_stack.bootstrap,
        ECHO_IN=src,
        ECHO_OUT=dst,
        ECHO_APP_ID=f"echo-{suffix}",
        ECHO_WEB_PORT=str(free_ports(1)[0]),
    )
    log = tmp_path / "echo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/integration/echo_app.py"), "worker", "-l", "info"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        records = consume(kafka_stack.bootstrap, dst, expect=20, timeout_s=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    got = {r.key: r.value for r in records}  # type: ignore[attr-defined]
    assert got == {f"k{i}".encode(): f"value-{i}".encode()[::-1] for i in range(20)}, (
        log.read_text()[-3000:]
    )


def test_stack_creates_the_record_topics_compacted(kafka_stack: LocalStack) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams.settings import Settings, TopicSettings
    from streams.worker.topics import topic_configs, topic_partitions

    suffix = uuid.uuid4().hex[:8]
    names = TopicSettings(
        product_embeddings=f"product-embeddings-{suffix}",
        category_sales=f"category-sales-{suffix}",
        product_labels=f"product-labels-{suffix}",
        orders_enriched=f"orders-enriched-{suffix}",
        product_review=f"product-review-{suffix}",
        listing_fingerprints=f"listing-fingerprints-{suffix}",
        label_corrections=f"label-corrections-{suffix}",
    )
    settings = Settings(topics=names)
    assert names.product_embeddings in topic_partitions(settings)
    configs = topic_configs(settings)
    specs = dict.fromkeys((*configs, names.product_review), 1)
    create_topics(kafka_stack.bootstrap, specs, configs=configs)
    admin = KafkaAdminClient(bootstrap_servers=kafka_stack.bootstrap)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in specs]
        described = admin.describe_configs(resources, config_filter="all")
    finally:
        admin.close()
    policy = {
        name: configs["cleanup.policy"]["value"] for name, configs in described["topic"].items()
    }
    assert policy[names.product_embeddings] == "compact"
    assert policy[names.category_sales] == "compact"
    # The records the Redis views are rebuilt from.
    assert policy[names.product_labels] == "compact"
    assert policy[names.orders_enriched] == "compact,delete"
    assert policy[names.product_review] == "delete"
    retention = described["topic"][names.orders_enriched]["retention.ms"]["value"]
    assert int(retention) == settings.recommend.history_days * 86_400_000
    assert policy[names.listing_fingerprints] == "compact"
    assert policy[names.label_corrections] == "compact"
