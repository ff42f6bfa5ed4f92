"""The order agent's batch consumer on the real broker: batches, commits, stop, crash, joins."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from streams.tools.stack import create_topics
from streams.worker.batchconsumer import BatchConsumer
from streams.worker.consumed import ConsumedRecord
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration

PARTITIONS = 2


@pytest.fixture
def topic(kafka_stack: LocalStack, producer: KafkaProducer) -> str:
    name = f"bc-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_stack.bootstrap, {name: PARTITIONS})
    return name


def publish(producer: KafkaProducer, topic: str, n: int, start: int = 0) -> set[bytes]:
    values = {f"v-{i}".encode() for i in range(start, start + n)}
    for v in sorted(values):
        producer.send(topic, key=v, value=v)
    producer.flush()
    return values


def consumer(
    stack: LocalStack,
    topic: str,
    group: str,
    handle: Callable[[list[ConsumedRecord]], Awaitable[None]],
    **extra: Any,
) -> BatchConsumer:
    return BatchConsumer(
        topics=[topic],
        group_id=group,
        handle=handle,
        client_config={"bootstrap_servers": stack.bootstrap},
        max_records=50,
        max_latency_ms=20,
        **extra,
    )


async def until(cond: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def committed(stack: LocalStack, topic: str, group: str) -> dict[int, int | None]:
    c = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False
    )
    await c.start()
    try:
        return {p: await c.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await c.stop()


async def end_offsets(stack: LocalStack, topic: str) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
    await c.start()
    try:
        ends = await c.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await c.stop()


def test_batches_are_bounded_each_record_handled_once_and_committed(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str
) -> None:
    sent = publish(producer, topic, 1000)
    seen: Counter[bytes] = Counter()
    sizes: list[int] = []

    async def handle(records: list[ConsumedRecord]) -> None:
        sizes.append(len(records))
        seen.update(r.value for r in records)
        assert all(r.topic == topic and r.timestamp_ms > 0 for r in records)

    async def main() -> dict[int, int | None]:
        group = f"g-{uuid.uuid4().hex[:6]}"
        bc = consumer(kafka_stack, topic, group, handle)
        await bc.start()
        await until(lambda: len(seen) >= len(sent))
        lag = await bc.lag()
        await bc.stop()
        assert sum(lag.values()) == 0
        return await committed(kafka_stack, topic, group)

    offsets = asyncio.run(main())
    assert set(seen) == sent
    assert max(seen.values()) == 1
    assert max(sizes) <= 50
    assert len(sizes) >= len(sent) // 50
    assert offsets == asyncio.run(end_offsets(kafka_stack, topic))


def test_stop_finishes_the_in_flight_batch_and_commits_it(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str
) -> None:
    publish(producer, topic, 200)
    done: list[int] = []

    async def main() -> tuple[dict[int, int | None], int]:
        group = f"g-{uuid.uuid4().hex[:6]}"
        inside = asyncio.Event()

        async def slow(records: list[ConsumedRecord]) -> None:
            inside.set()
            await asyncio.sleep(1.0)
            done.append(len(records))

        bc = consumer(kafka_stack, topic, group, slow)
        await bc.start()
        await asyncio.wait_for(inside.wait(), 60)
        await bc.stop()  # while the first batch sleeps
        return await committed(kafka_stack, topic, group), len(done)

    offsets, finished = asyncio.run(main())
    assert finished >= 1, "the in-flight batch was not finished"
    assert sum(o or 0 for o in offsets.values()) == sum(done)


def test_a_failing_handler_crashes_the_service_and_commits_nothing(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str
) -> None:
    publish(producer, topic, 20)

    async def broken(records: list[ConsumedRecord]) -> None:
        raise RuntimeError("producing failed for good")

    async def main() -> tuple[bool, Any, dict[int, int | None]]:
        group = f"g-{uuid.uuid4().hex[:6]}"
        bc = consumer(kafka_stack, topic, group, broken)
        await bc.start()
        await until(lambda: bc.crashed)
        reason = bc.crash_reason
        await bc.stop()
        return bc.crashed, reason, await committed(kafka_stack, topic, group)

    crashed, reason, offsets = asyncio.run(main())
    assert crashed
    assert isinstance(reason, RuntimeError)
    assert all(o is None for o in offsets.values())


def test_a_member_joining_mid_stream_loses_nothing(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str
) -> None:
    sent = publish(producer, topic, 2400)
    seen: Counter[bytes] = Counter()
    by_member: Counter[str] = Counter()

    def handler(name: str) -> Callable[[list[ConsumedRecord]], Awaitable[None]]:
        async def handle(records: list[ConsumedRecord]) -> None:
            await asyncio.sleep(0.25)  # slow enough for the join to land mid-stream
            seen.update(r.value for r in records)
            by_member[name] += len(records)

        return handle

    async def main() -> dict[int, int | None]:
        group = f"g-{uuid.uuid4().hex[:6]}"
        first = consumer(kafka_stack, topic, group, handler("first"))
        await first.start()
        await until(lambda: len(seen) >= 100)
        second = consumer(kafka_stack, topic, group, handler("second"))
        await second.start()
        await until(lambda: bool(second.consumer and second.consumer.assignment()))
        assert len(seen) < len(sent), "the join should land mid-stream"
        await until(lambda: len(seen) >= len(sent), timeout_s=120)
        await first.stop()
        await second.stop()
        return await committed(kafka_stack, topic, group)

    offsets = asyncio.run(main())
    assert set(seen) == sent  # at-least-once: duplicates allowed, loss not
    assert by_member["second"] > 0, "the second member never got a partition"
    assert offsets == asyncio.run(end_offsets(kafka_stack, topic))


def test_a_new_group_starts_where_the_inherited_group_left_off(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str
) -> None:
    """Upgrading from orders in the Faust group: retained orders are not enriched again."""
    publish(producer, topic, 100)
    old, new = f"old-{uuid.uuid4().hex[:6]}", f"new-{uuid.uuid4().hex[:6]}"
    ends = asyncio.run(end_offsets(kafka_stack, topic))
    # The old group had handled all but the last 10 records of partition 0, and
    # nothing of partition 1.
    done0 = ends[0] - 10

    async def commit_old() -> None:
        c = AIOKafkaConsumer(
            bootstrap_servers=kafka_stack.bootstrap, group_id=old, enable_auto_commit=False
        )
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.commit({tp: done0})
        finally:
            await c.stop()

    asyncio.run(commit_old())
    seen: list[ConsumedRecord] = []

    async def handle(records: list[ConsumedRecord]) -> None:
        seen.extend(records)

    async def main() -> None:
        bc = consumer(kafka_stack, topic, new, handle, inherit_offsets_from=old)
        await bc.start()
        await until(lambda: len(seen) >= 10 + ends[1])
        await asyncio.sleep(1)  # anything more would show up now
        await bc.stop()

    asyncio.run(main())
    by_partition = Counter(r.partition for r in seen)
    assert by_partition == {0: 10, 1: ends[1]}
    assert min(r.offset for r in seen if r.partition == 0) == done0
    assert asyncio.run(committed(kafka_stack, topic, new)) == ends


def test_an_unreadable_batch_pauses_its_partition_and_the_rest_goes_on(
    kafka_stack: LocalStack, producer: KafkaProducer, topic: str, monkeypatch: Any,
    caplog: Any,
) -> None:  # fmt: skip
    """A client without the lz4 library meets an lz4 batch (what crash-looped the worker).

    Partition 1 holds plain records, then one lz4 batch, then plain records;
    partition 0 only plain ones. Everything before the batch and all of
    partition 0 is handled once, partition 1 is paused at the batch with one
    log line naming it, and the metric says so. Nothing is committed past it.
    """
    import aiokafka.codec

    from streams.worker import metrics

    def send(partition: int, values: list[bytes], compression: str | None = None) -> None:
        p = KafkaProducer(bootstrap_servers=kafka_stack.bootstrap, compression_type=compression,
                          linger_ms=20)  # fmt: skip
        for v in values:
            p.send(topic, value=v, partition=partition)
        p.flush()
        p.close()

    before = [f"p1-{i}".encode() for i in range(30)]
    packed = [f"lz4-{i}".encode() for i in range(20)]
    after = [f"p1-after-{i}".encode() for i in range(10)]
    plain = [f"p0-{i}".encode() for i in range(200)]
    send(1, before)
    send(1, packed, "lz4")
    send(1, after)
    send(0, plain)
    monkeypatch.setattr(aiokafka.codec, "has_lz4", lambda: False)
    seen: Counter[bytes] = Counter()

    async def handle(records: list[ConsumedRecord]) -> None:
        seen.update(r.value for r in records)

    async def main() -> tuple[Any, dict[int, int | None]]:
        group = f"g-{uuid.uuid4().hex[:6]}"
        bc = consumer(kafka_stack, topic, group, handle)
        await bc.start()
        await until(lambda: bool(bc.unreadable) and len(seen) >= len(before) + len(plain))
        await asyncio.sleep(1.0)  # nothing more may arrive
        assert bc.running.is_set()
        unreadable = list(bc.unreadable)
        await bc.stop()
        return unreadable, await committed(kafka_stack, topic, group)

    with caplog.at_level("ERROR", logger="streams.worker.unreadable"):
        unreadable, offsets = asyncio.run(main())
    assert set(seen) == set(before) | set(plain)
    assert max(seen.values()) == 1
    assert [(u.topic, u.partition, u.offset) for u in unreadable] == [(topic, 1, len(before))]
    assert "lz4" in unreadable[0].cause
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "ERROR" and r.name == "streams.worker.unreadable"
    ]
    assert lines == [unreadable[0].line()]
    assert f"{topic}[1] at offset {len(before)}" in lines[0]
    assert offsets == {0: len(plain), 1: len(before)}
    gauge = metrics.UNREADABLE_PARTITIONS.labels(topic, "1")._value.get()
    assert gauge == 1
