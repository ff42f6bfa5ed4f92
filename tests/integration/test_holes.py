"""Reading a skipped range of a partition again, from the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaProducer

from streams.tools.stack import create_topics
from streams.worker.holes import Hole, read_range
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration


def test_read_range_returns_exactly_the_records_of_the_hole(
    kafka_stack: LocalStack, producer: KafkaProducer
) -> None:
    topic = f"holes-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_stack.bootstrap, {topic: 2})
    for i in range(12):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=1)
    producer.send(topic, key=b"other", value=b"other", partition=0)
    producer.flush()
    config = {"bootstrap_servers": kafka_stack.bootstrap}
    got = asyncio.run(read_range(config, Hole(topic, 1, 4, 8)))
    assert [(r.partition, r.offset, r.key, r.value) for r in got] == [
        (1, i, f"k{i}".encode(), f"v{i}".encode()) for i in range(4, 8)
    ]
    # A range past the end of the partition cannot be read: an error, not a silent nothing.
    with pytest.raises(TimeoutError):
        asyncio.run(read_range(config, Hole(topic, 1, 10, 20), timeout_s=2.0))
