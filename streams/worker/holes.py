"""Records a partition's consumer skipped, noticed and read again.

Within one consumer generation the labelling agent receives a partition's
records in offset order, one after another (``product-images`` is neither
compacted nor transactional). Faust broke that in the compose kill test:
right after a restart, offsets 7 and 9 of a partition reached the agent and 8
never did, and the offsets after it were committed, so the listing was lost
for good; which path in Faust drops the record is not pinned down.
:class:`OffsetWatch` notices a hole from the offsets that do arrive;
:func:`read_range` reads the missing records straight from the broker (no
group, no commit), and the batch that revealed the hole processes them first,
before any of its own records are acked (docs/DELIVERY.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from streams.worker import metrics
from streams.worker.batchconsumer import to_record
from streams.worker.consumed import ConsumedRecord

__all__ = [
    "Hole",
    "OffsetWatch",
    "Refetch",
    "Stall",
    "StallWatch",
    "committed_offset",
    "in_order",
    "read_range",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hole:
    """Offsets ``start`` up to (not including) ``end`` of one partition that never arrived."""

    topic: str
    partition: int
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.start}..{self.end - 1}"


#: (topic, partition) -> (the offset the agent waits for, the partition's high watermark).
Offsets = dict[tuple[str, int], tuple[int, int]]

#: Reads a hole's records from the broker.
Refetch = Callable[[Hole], Awaitable[list[ConsumedRecord]]]


#: The offset a partition's consumer resumes from (its committed offset), or None.
Committed = Callable[[str, int], int | None]


class OffsetWatch:
    """The next offset each partition should deliver, per consumer generation.

    A jump back (records delivered again after a seek) restarts the watch of
    that partition; a jump forward within one generation is a hole. In a new
    generation the consumer resumes from the committed offset (``committed``),
    so a first record past it is a hole too: right after a worker restarted,
    Faust dropped the record at the committed offset and committed past it
    (``Consumer._new_offset`` accepts a one-record gap at the head of what was
    acked), so the listing was lost and nothing else noticed (docs/DELIVERY.md).
    """

    def __init__(self, committed: Committed | None = None) -> None:
        self._next: dict[tuple[str, int], tuple[int, int]] = {}
        self._committed = committed

    def see(self, events: Sequence[Any]) -> list[Hole]:
        """The holes in a batch of Faust events (in the order they arrived)."""
        holes = []
        for event in events:
            msg = event.message
            tp, offset = (msg.topic, msg.partition), msg.offset
            generation = getattr(msg, "generation_id", 0)
            seen = self._next.get(tp)
            if seen is not None and seen[0] == generation:
                expected: int | None = seen[1]
            else:
                expected = None if self._committed is None else self._committed(*tp)
            if expected is not None and offset > expected:
                holes.append(Hole(msg.topic, msg.partition, expected, offset))
            self._next[tp] = (generation, offset + 1)
        return holes

    def next_offset(self, topic: str, partition: int, generation: int) -> int | None:
        """The offset the agent waits for next on a partition in ``generation`` (None: unseen)."""
        seen = self._next.get((topic, partition))
        return seen[1] if seen is not None and seen[0] == generation else None


@dataclass(frozen=True)
class Stall:
    """A partition whose records from ``expected`` on never reached the idle agent."""

    topic: str
    partition: int
    expected: int
    highwater: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] from offset {self.expected}"


class StallWatch:
    """Partitions whose fetcher passed records that never reached the agent, then went quiet.

    :class:`OffsetWatch` notices a skipped record from a later one; when the
    skipped records are a partition's last (a backlog drained after a restart,
    then nothing new), no later record comes, and the partition holds them
    until the next rebalance (docs/DELIVERY.md). A partition is stalled
    when the agent has been idle (no batch in flight, none buffered, no record
    received) for ``idle_s`` while the partition holds records from the offset
    the agent waits for (the last it saw plus one in this consumer generation,
    else the committed offset); the caller seeks it back there.
    """

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        #: (topic, partition) -> (expected offset, high watermark, suspected since)
        self._suspect: dict[tuple[str, int], tuple[int, int, float]] = {}

    def check(self, now: float, idle_since: float | None, partitions: Offsets) -> list[Stall]:
        """The stalled partitions among ``partitions`` (expected offset and high watermark of each).

        ``idle_since``: when the agent last received or processed anything (None: busy now).
        A partition is reported after ``idle_s`` of both, once per expected offset
        and high watermark: offsets that hold no record the agent can receive
        (transaction markers) are not reported again and again.
        """
        if idle_since is None:
            self._suspect.clear()
            return []
        stalls = []
        for key, (expected, highwater) in partitions.items():
            if highwater <= expected:
                self._suspect.pop(key, None)
                continue
            seen = self._suspect.get(key)
            if seen is None or seen[:2] != (expected, highwater):
                seen = self._suspect[key] = (expected, highwater, now)
            if now - max(seen[2], idle_since) >= self.idle_s:
                stalls.append(Stall(key[0], key[1], expected, highwater))
                self._suspect[key] = (expected, highwater, float("inf"))
        for key in set(self._suspect) - set(partitions):
            del self._suspect[key]
        return stalls


async def refill(holes: Sequence[Hole], refetch: Refetch | None) -> list[ConsumedRecord]:
    """The records of ``holes``, read again; each hole counted and logged by its outcome."""
    found: list[ConsumedRecord] = []
    for hole in holes:
        size = hole.end - hole.start
        if refetch is None:
            records = None
        else:
            try:
                records = await refetch(hole)
            except Exception:
                logger.exception("reading %s again failed", hole)
                records = None
        if records is None:
            metrics.OFFSET_HOLES.labels(hole.topic, "lost").inc(size)
            logger.error(
                "%s never reached the agent and could not be read again: their listings "
                "are not labelled (docs/OPERATIONS.md, 'Skipped records')",
                hole,
            )
            continue
        metrics.OFFSET_HOLES.labels(hole.topic, "read_again").inc(size)
        logger.warning(
            "%s never reached the agent (skipped by the consumer); read again: %d record(s)",
            hole, len(records),
        )  # fmt: skip
        found.extend(records)
    return found


async def read_range(
    config: dict[str, Any], hole: Hole, timeout_s: float = 30.0
) -> list[ConsumedRecord]:
    """The records of ``hole``, read from the broker by a consumer of its own (no group).

    Offsets that hold no record (transaction markers) are simply not there.
    Raises TimeoutError when the records cannot be read within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(
        **{**config, "client_id": f"vitrine-refetch-{uuid.uuid4().hex[:8]}"},
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition(hole.topic, hole.partition)
        consumer.assign([tp])
        consumer.seek(tp, hole.start)
        out: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < hole.end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{hole}: read up to {await consumer.position(tp)} only")
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=hole.end - hole.start)
            out.extend(to_record(m) for m in got.get(tp, []) if m.offset < hole.end)
        return out
    finally:
        await consumer.stop()


def committed_offset(app: Any, topic: str, partition: int) -> int | None:
    """The partition's committed offset as Faust's consumer holds it (the next to read)."""
    offset = app.consumer._committed_offset.get(TP(topic, partition))
    return None if offset is None else int(offset)


@dataclass(frozen=True)
class _Rewind:
    """A partition sought back to a hole: what revealed it, in which generation, until when."""

    start: int  # the hole's first offset
    revealed: int  # the offset past the hole that revealed it
    generation: int
    deadline: float  # monotonic seconds


async def in_order(
    events: AsyncIterator[Any],
    watch: OffsetWatch,
    seek: Callable[[Hole], Awaitable[None]],
    *,
    first_only: bool = False,
    wait_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Any]:
    """A Faust stream's events with none skipped: a hole sends its partition back to it.

    For the agents that fold each event into state as it comes (the sales
    windows, the corrections), where a record read again out of band, as the
    labelling agent's batches do (:func:`refill`), has no place. The event that
    revealed a hole is not handed on; ``seek`` sends the partition back to the
    hole's start, and the events already fetched past it are passed over until
    the partition's records come again (one at or below the revealing offset).

    The passing over is bounded, since Faust acks what is passed over and a
    commit may pass the hole: it ends at once when the partition's events come
    in another consumer generation (a rebalance: the new assignment starts from
    the committed offset, and the watch checks that generation afresh), and
    after ``wait_s`` of events that never go back (logged as an ERROR, counted
    as ``unrecovered``): records passed over then are lost, not every record
    after them. ``first_only``: a compacted topic, whose offsets have gaps
    wherever records were compacted away; only a partition's first event of
    each consumer generation is checked (against the committed offset).
    """
    rewinding: dict[tuple[str, int], _Rewind] = {}
    async for event in events:
        msg = event.message
        key = (msg.topic, msg.partition)
        generation = getattr(msg, "generation_id", 0)
        rewind = rewinding.get(key)
        if rewind is not None:
            del rewinding[key]
            if generation == rewind.generation and msg.offset > rewind.revealed:
                if clock() < rewind.deadline:
                    rewinding[key] = rewind
                    continue  # fetched before the seek back
                lost = msg.offset - rewind.start
                metrics.OFFSET_HOLES.labels(msg.topic, "unrecovered").inc(lost)
                logger.error(
                    "%s[%d] offsets %d..%d: never came again in %.0f s after the seek back; "
                    "going on from %d", msg.topic, msg.partition, rewind.start, msg.offset - 1,
                    wait_s, msg.offset,
                )  # fmt: skip
                watch.see([event])  # the partition goes on from here
                yield event
                continue
        if first_only and watch.next_offset(msg.topic, msg.partition, generation) is not None:
            watch.see([event])
            yield event
            continue
        holes = watch.see([event])
        if not holes:
            yield event
            continue
        hole = holes[0]
        rewinding[key] = _Rewind(hole.start, msg.offset, generation, clock() + wait_s)
        metrics.OFFSET_HOLES.labels(hole.topic, "rewound").inc(hole.end - hole.start)
        logger.warning(
            "%s never reached the agent (skipped by the consumer); partition read again from %d",
            hole, hole.start,
        )  # fmt: skip
        await seek(hole)
