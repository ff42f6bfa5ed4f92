"""Record batches a consumer cannot read: found, paused, reported, never a crash loop.

With every codec installed (see ``pyproject.toml``) the broker validates what
producers send, so a batch this worker cannot read is rare: a codec the client
lacks (a broken install, a codec newer than the client) or a corrupt log
segment (CRC mismatch). aiokafka raises such an error from ``getmany`` without
saying which partition it came from, and it drops the records it had already
drained from other partitions in that call. Crashing would restart on the same
batch forever, so instead:

1. every assigned partition is rewound to where processing stands (nothing is
   lost or skipped; the caller processes and commits each batch before the next
   fetch);
2. each partition is read alone until it raises, ends or a deadline passes,
   then rewound again: the one that raises is the culprit, and its records
   before the batch are handed back to be processed;
3. the culprit is paused at the batch (the others go on), counted in
   ``vitrine_unreadable_partitions{topic,partition}``, and named in one ERROR
   log line with its offset and cause; the worker reports not ready.

The way out (docs/DELIVERY.md, "Unreadable record batches"): install the missing codec
library and restart; for a corrupt batch, stop the workers and move the group
past it with ``kafka-consumer-groups --reset-offsets --to-offset``.
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
    if offset is None:
        await consumer.seek_to_beginning(tp)
    else:
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
