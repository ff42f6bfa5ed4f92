"""The labelling agent's offset watch: holes per partition and generation, counted by outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from streams.worker.consumed import ConsumedRecord
from streams.worker.holes import Hole, OffsetWatch, Stall, StallWatch, refill


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
