"""Reading a skipped range of a partition again, from the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import codec
from streams.tools.stack import create_topics
from streams.tools.workerproc import WorkerProcess
from streams.worker.holes import Hole, read_range
from tests.conftest import LocalStack, Topics, consume
from tests.events import listing, photo_bytes
from tests.polling import wait_until

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


def _stalled(worker: WorkerProcess, topic: str) -> float:
    """``vitrine_offset_holes_total{outcome="stalled"}`` of ``topic`` in the worker's metrics."""
    want = f'vitrine_offset_holes_total{{outcome="stalled",topic="{topic}"}} '
    lines = [x for x in worker.metrics().splitlines() if x.startswith(want)]
    return float(lines[0].split()[-1]) if lines else 0.0


@pytest.mark.timeout(180)
def test_a_partition_ending_in_a_transaction_marker_is_read_again_once_and_keeps_working(
    topics: Topics, worker_factory: Any, kafka_stack: LocalStack, producer: KafkaProducer
) -> None:
    # A catalogue service that publishes in transactions leaves a commit marker
    # after its last listing: the partition's high watermark is one past the
    # last record the agent can ever receive. The stall watch (the agent idle
    # 10 s while the partition holds offsets it never got) seeks it back there
    # once, finds nothing more, and does not loop; the partition goes on.
    worker = worker_factory().start()
    photos = dict(photo_bytes())
    tx = KafkaProducer(
        bootstrap_servers=kafka_stack.bootstrap,
        transactional_id=f"catalogue-{uuid.uuid4().hex[:8]}",
        max_request_size=16 * 1024 * 1024,
    )
    try:
        tx.init_transactions()
        tx.begin_transaction()
        key, value = listing("tx-cabbage", photos["Cabbage"], event_id="tx-cabbage")
        tx.send(topics.product_images, key=key, value=value, partition=0)
        tx.commit_transaction()
    finally:
        tx.close()
    assert len(consume(kafka_stack.bootstrap, topics.product_labels, expect=1)) == 1
    wait_until(lambda: _stalled(worker, topics.product_images) == 1, "the marker read again",
               timeout_s=60)  # fmt: skip
    time.sleep(12)  # another idle period: not sought back again for the same marker
    assert _stalled(worker, topics.product_images) == 1
    key, value = listing("after-tx", photos["Banana"], event_id="after-tx")
    producer.send(topics.product_images, key=key, value=value, partition=0)
    producer.flush()
    labels = consume(kafka_stack.bootstrap, topics.product_labels, expect=2)
    assert sorted(codec.decode_product_labelled(r.value).event_id for r in labels) == [
        "after-tx", "tx-cabbage"]  # fmt: skip
    assert worker.running
