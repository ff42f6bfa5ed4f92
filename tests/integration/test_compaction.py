"""tests/compaction.py on the real broker: the cleaner runs, the latest of every key stays."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from streams.tools.stack import create_topics
from tests.compaction import force_compaction
from tests.conftest import LocalStack, consume

pytestmark = pytest.mark.integration


def topic_overrides(bootstrap: str, topic: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )["topic"][topic]
    finally:
        admin.close()
    return {k: e["value"] for k, e in found.items() if e["config_source"] == "DYNAMIC_TOPIC_CONFIG"}


def test_superseded_records_are_gone_and_the_latest_of_every_key_stays(
    kafka_stack: LocalStack, producer: KafkaProducer
) -> None:
    topic = f"compaction-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_stack.bootstrap, {topic: 2}, compacted=[topic])
    for version in range(5):
        for key in ("a", "b", "c"):
            producer.send(topic, key=key.encode(), value=f"{key}{version}".encode())
        producer.flush()
    assert len(consume(kafka_stack.bootstrap, topic, expect=15, timeout_s=30)) == 15
    overrides = topic_overrides(kafka_stack.bootstrap, topic)

    done = force_compaction(kafka_stack.bootstrap, topic, timeout_s=120)

    assert (done.records_before, done.records_after, done.removed) == (15, 3, 12)
    records = consume(kafka_stack.bootstrap, topic, expect=10**9, timeout_s=5)
    latest = {r.key: r.value for r in records}
    assert latest == {b"a": b"a4", b"b": b"b4", b"c": b"c4"}
    # One record per key, and the copy of each partition's last record that rolled it.
    assert len(records) == 3 + len({r.partition for r in records})
    assert topic_overrides(kafka_stack.bootstrap, topic) == overrides


def test_a_topic_that_is_not_compacted_is_refused(kafka_stack: LocalStack) -> None:
    topic = f"compaction-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_stack.bootstrap, {topic: 1})
    with pytest.raises(ValueError, match=r"cleanup\.policy=delete"):
        force_compaction(kafka_stack.bootstrap, topic, timeout_s=30)
