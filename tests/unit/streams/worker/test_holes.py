"""The labelling agent's offset watch: holes per partition and generation, counted by outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from streams.worker.consumed import ConsumedRecord
from streams.worker.holes import Hole, OffsetWatch, Stall, StallWatch, in_order, refill


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1


@dataclass
class _Event:
    message: _Message


def _events(partition: int, offsets: list[int], generation: int = 1) -> list[_Event]:
    return [_Event(_Message("images", partition, o, generation)) for o in offsets]


def _counted(outcome: str) -> float:
    labels = {"topic": "images", "outcome": outcome}
    return REGISTRY.get_sample_value("vitrine_offset_holes_total", labels) or 0.0


def test_a_jump_forward_in_one_partition_is_a_hole() -> None:
    watch = OffsetWatch()
    assert watch.see(_events(0, [10, 11, 12]) + _events(1, [5])) == []
    assert watch.see(_events(0, [13, 16, 17]) + _events(1, [6])) == [Hole("images", 0, 14, 16)]


def test_redelivery_and_a_new_generation_are_not_holes() -> None:
    watch = OffsetWatch()
    assert watch.see(_events(0, [10, 11, 12])) == []
    assert watch.see(_events(0, [8, 9, 10, 11, 12, 13])) == []  # a seek back: delivered again
    assert watch.see(_events(0, [40, 41], generation=2)) == []  # another worker had 14..39
    assert watch.see(_events(0, [42, 45], generation=2)) == [Hole("images", 0, 43, 45)]


def test_a_first_record_past_the_committed_offset_is_a_hole() -> None:
    committed = {("images", 0): 83, ("images", 1): 77}
    watch = OffsetWatch(lambda topic, partition: committed.get((topic, partition)))
    # Partition 0 resumes at its committed offset; partition 1 skipped offset 77.
    assert watch.see(_events(0, [83, 84]) + _events(1, [78, 79])) == [Hole("images", 1, 77, 78)]
    # Within the generation the watch goes by what it saw, not by the commit.
    committed[("images", 0)] = 90
    assert watch.see(_events(0, [85])) == []
    # A new generation starts from the committed offset again; one below it
    # (records delivered again) is no hole.
    assert watch.see(_events(0, [92], generation=2)) == [Hole("images", 0, 90, 92)]
    assert watch.see(_events(1, [70], generation=2)) == []
    # No committed offset (a partition never committed): nothing to go by.
    assert OffsetWatch(lambda topic, partition: None).see(_events(0, [5])) == []


def _record(offset: int) -> ConsumedRecord:
    return ConsumedRecord(b"k", b"v", "images", 0, offset, 0)


def test_holes_read_again_are_counted_as_such_and_the_rest_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def read(hole: Hole) -> list[ConsumedRecord]:
        if hole.partition == 2:
            raise TimeoutError("the broker did not answer")
        return [_record(o) for o in range(hole.start, hole.end)]

    holes = [Hole("images", 0, 14, 16), Hole("images", 2, 7, 8)]
    again, lost = _counted("read_again"), _counted("lost")
    with caplog.at_level(logging.WARNING, logger="streams.worker.holes"):
        records = asyncio.run(refill(holes, read))
    assert [r.offset for r in records] == [14, 15]
    assert (_counted("read_again"), _counted("lost")) == (again + 2, lost + 1)
    assert "images[0] offsets 14..15 never reached the agent" in caplog.text
    assert (
        "images[2] offsets 7..7 never reached the agent and could not be read again" in caplog.text
    )
    assert asyncio.run(refill([Hole("images", 3, 1, 4)], None)) == []
    assert _counted("lost") == lost + 4


def test_next_offset_is_per_generation() -> None:
    watch = OffsetWatch()
    watch.see(_events(0, [4, 5, 6], generation=2))
    assert watch.next_offset("images", 0, 2) == 7
    assert watch.next_offset("images", 0, 3) is None  # a new generation starts from its commit
    assert watch.next_offset("images", 1, 2) is None


def test_a_partition_holding_records_the_idle_agent_never_got_is_stalled() -> None:
    stalls = StallWatch(idle_s=10)
    parts = {("images", 0): (7, 50), ("images", 1): (20, 20)}  # partition 1 is drained
    assert stalls.check(100, 95, parts) == []  # suspected from 100
    assert stalls.check(109, 95, parts) == []
    assert stalls.check(110, 95, parts) == [Stall("images", 0, 7, 50)]
    # Reported once per expected offset and high watermark ...
    assert stalls.check(130, 95, parts) == []
    # ... again when either moves (more records, or some arrived and the rest did not).
    assert stalls.check(131, 95, {("images", 0): (7, 60)}) == []
    assert stalls.check(141, 95, {("images", 0): (7, 60)}) == [Stall("images", 0, 7, 60)]


def test_a_busy_agent_is_never_stalled() -> None:
    stalls = StallWatch(idle_s=10)
    parts = {("images", 0): (7, 50)}
    assert stalls.check(100, 99, parts) == []
    assert stalls.check(105, None, parts) == []  # a batch arrived or runs: start again
    assert stalls.check(112, 111, parts) == []  # idle again, and suspected again from 112
    assert stalls.check(121, 111, parts) == []
    assert stalls.check(122, 111, parts) == [Stall("images", 0, 7, 50)]


def _in_order(
    stream: list[_Event],
    committed: dict[tuple[str, int], int],
    *,
    first_only: bool = False,
    times: list[float] | None = None,
) -> tuple[list[tuple[int, int]], list[Hole]]:
    """The (partition, offset) ``in_order`` hands on, and the holes it sought back to."""
    sought: list[Hole] = []
    clock = iter(times or [0.0] * 100)

    async def seek(hole: Hole) -> None:
        sought.append(hole)

    async def events() -> AsyncIterator[_Event]:
        for e in stream:
            yield e

    async def run() -> list[tuple[int, int]]:
        watch = OffsetWatch(lambda topic, partition: committed.get((topic, partition)))
        handed = in_order(events(), watch, seek, first_only=first_only, wait_s=30,
                          clock=lambda: next(clock))  # fmt: skip
        return [(e.message.partition, e.message.offset) async for e in handed]

    return asyncio.run(run()), sought


def test_a_hole_in_a_stream_sends_its_partition_back_and_passes_over_what_came_past_it() -> None:
    rewound = _counted("rewound")
    # Partition 0 skipped offset 10 (its committed one) at the start; the seek back
    # delivers 10 again, then the rest. Partition 1 is whole.
    stream = _events(0, [11, 12]) + _events(1, [5]) + _events(0, [10, 11, 12])
    handed, sought = _in_order(stream, {("images", 0): 10, ("images", 1): 5})
    assert handed == [(1, 5), (0, 10), (0, 11), (0, 12)]
    assert sought == [Hole("images", 0, 10, 11)]
    assert _counted("rewound") == rewound + 1


def test_a_rebalance_ends_the_passing_over() -> None:
    """A new generation starts from the committed offset: nothing of it is passed over.

    Faust acks what is passed over, so a commit may pass the hole (here to 13);
    the first version went on passing over every later record of such a
    partition, for good.
    """
    committed = {("images", 0): 10}
    sought: list[Hole] = []

    async def seek(hole: Hole) -> None:
        sought.append(hole)

    async def events() -> AsyncIterator[_Event]:
        for e in _events(0, [11, 12]):
            yield e
        committed[("images", 0)] = 13  # the passed-over 12 was acked and committed
        for e in _events(0, [13, 14], generation=2):
            yield e

    async def run() -> list[int]:
        watch = OffsetWatch(lambda topic, partition: committed.get((topic, partition)))
        return [e.message.offset async for e in in_order(events(), watch, seek)]

    assert asyncio.run(run()) == [13, 14]
    assert sought == [Hole("images", 0, 10, 11)]


def test_records_that_never_come_again_are_given_up_on_after_the_wait() -> None:
    unrecovered = _counted("unrecovered")
    # Sought back at t=0; the partition keeps delivering past the hole until t=31.
    stream = _events(0, [11, 12, 13, 14])
    handed, sought = _in_order(stream, {("images", 0): 10}, times=[0.0, 10.0, 31.0, 32.0])
    assert handed == [(0, 13), (0, 14)]  # 12 passed over in the wait; 13 on are not
    assert sought == [Hole("images", 0, 10, 11)]  # once: the partition goes on from 13
    assert _counted("unrecovered") == unrecovered + 3  # 10, 11 and 12


def test_on_a_compacted_topic_only_a_generations_first_event_is_checked() -> None:
    # 13 and 14 were compacted away; 11 past the committed 10 is a hole.
    stream = _events(0, [11]) + _events(0, [10, 11, 12, 15])
    handed, sought = _in_order(stream, {("images", 0): 10}, first_only=True)
    assert handed == [(0, 10), (0, 11), (0, 12), (0, 15)]
    assert sought == [Hole("images", 0, 10, 11)]
