"""Record batches a consumer cannot read: found, paused, reported, never a crash loop.

A batch the worker cannot read (a codec the client lacks, a corrupt log segment) is
rare, and aiokafka raises it from ``getmany`` without naming its partition.
Crashing would restart on the same batch forever, so the partitions are rewound to
where processing stands, read one at a time to find the culprit, and the culprit
alone is paused (counted in ``vitrine_unreadable_partitions``, named in one ERROR
line, the worker not ready); nothing is lost or skipped. How it works and the way
out: docs/DELIVERY.md ("Unreadable record batches").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

from streams.worker import metrics

__all__ = ["UNREADABLE_ERRORS", "UnreadablePartition", "find_unreadable"]

logger = logging.getLogger(__name__)

#: What aiokafka raises for a record batch it cannot decode.
UNREADABLE_ERRORS = (UnsupportedCodecError, CorruptRecordException)

_PROBE_S = 15.0


@dataclass(frozen=True)
class UnreadablePartition:
    """A paused partition: where reading stopped and why."""

    topic: str
    partition: int
    offset: int
    cause: str

    def line(self) -> str:
        """The one log line an operator needs."""
        return (
            f"cannot read {self.topic}[{self.partition}] at offset {self.offset}: {self.cause}; "
            "partition paused, worker not ready (see docs/DELIVERY.md, 'Unreadable record batches')"
        )


async def _rewind(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int | None) -> None:
    # Never through ``seek_to_beginning``: it leaves the partition without a
    # position until a ListOffsets round trip returns, and Faust's livelock
    # detector reads that position unguarded on its timer (an AssertionError
    # in aiokafka that crashes the consumer). Asking for the offset first and
    # seeking to it moves the position in one step.
    if offset is None:
        offset = (await consumer.beginning_offsets([tp]))[tp]
    consumer.seek(tp, offset)


async def find_unreadable(
    consumer: AIOKafkaConsumer,
    processed: dict[TopicPartition, int],
    error: BaseException,
    *,
    probe_s: float = _PROBE_S,
) -> tuple[list[UnreadablePartition], dict[TopicPartition, list[Any]]]:
    """Rewind, find and pause the partitions whose batches raise.

    ``processed`` is the next offset to process per partition (what the caller
    has handled); partitions missing from it rewind to their committed offset.
    Returns the paused partitions, and the records of each that come before
    its unreadable batch (read one by one: aiokafka drops a whole fetch when a
    batch in it raises), which the caller processes like any fetched records.
    """
    active = sorted(consumer.assignment() - consumer.paused())
    start: dict[TopicPartition, int | None] = {}
    for tp in active:
        start[tp] = processed.get(tp)
        if start[tp] is None:
            start[tp] = await consumer.committed(tp)
        await _rewind(consumer, tp, start[tp])
    found, salvaged = [], {}
    for tp in active:
        cause, before = await _probe(consumer, tp, probe_s)
        if cause is None:
            await _rewind(consumer, tp, start[tp])
            continue
        offset = await consumer.position(tp)
        found.append(UnreadablePartition(tp.topic, tp.partition, offset, cause))
        consumer.pause(tp)
        metrics.UNREADABLE_PARTITIONS.labels(tp.topic, str(tp.partition)).set(1)
        if before:
            salvaged[tp] = before
    for bad in found:
        logger.error("%s", bad.line())
    if not found:
        logger.warning("a fetch failed (%s) but every partition reads again; going on", error)
    return found, salvaged


async def _probe(
    consumer: AIOKafkaConsumer, tp: TopicPartition, probe_s: float
) -> tuple[str | None, list[Any]]:
    """Read ``tp`` alone until it raises, ends, or ``probe_s`` passes.

    Returns the cause (None if it read) and the records read before it raised.
    """
    deadline = time.monotonic() + probe_s
    read: list[Any] = []
    step = 500
    while time.monotonic() < deadline:
        at = await consumer.position(tp)
        try:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=step)
        except UNREADABLE_ERRORS as exc:
            if step == 1:
                return f"{type(exc).__name__}: {exc}", read
            consumer.seek(tp, at)  # again from here, one record at a time
            step = 1
            continue
        msgs = got.get(tp, [])
        read.extend(msgs)
        highwater = consumer.highwater(tp)
        if not msgs and highwater is not None and await consumer.position(tp) >= highwater:
            break
    return None, read
