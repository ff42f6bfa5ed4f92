"""The consumer's view of where each partition stands: before a fetch, and after a seek."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from prometheus_client import REGISTRY

from streams.worker.transport import _Consumer, _position


def test_partition_without_a_position_yet_has_none() -> None:
    async def check() -> None:
        assigned, other = TopicPartition("t", 0), TopicPartition("t", 1)
        assignment = Assignment({assigned})
        # Just assigned: aiokafka has not reset the offset yet (the CI crash).
        assert _position(assignment, assigned) is None
        # Revoked between the fetch's partition list and this read.
        assert _position(assignment, other) is None
        assignment.state_value(assigned).reset_to(42)
        assert _position(assignment, assigned) == 42

    asyncio.run(check())


@dataclass
class _Message:
    offset: int


class _Thread:
    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_first_record_past_the_seek_sends_its_partition_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust dropped the record at the committed offset after a restart: read it again."""
    skipped, fine = TP("images", 1), TP("images", 0)
    fetched = [(fine, _Message(83)), (skipped, _Message(78)), (skipped, _Message(79)),
               (fine, _Message(84))]  # fmt: skip

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, _Message]]:  # noqa: ASYNC109
        for item in fetched:
            yield item

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", getmany)
    consumer = object.__new__(_Consumer)
    consumer._resume_at = {fine: 83, skipped: 77}
    consumer._thread = thread = _Thread()
    consumer._read_offset = {}
    consumer._handed = {}

    async def delivered() -> list[tuple[TP, int]]:
        return [(tp, m.offset) async for tp, m in consumer.getmany(timeout=1.0)]

    before = (
        REGISTRY.get_sample_value(
            "vitrine_offset_holes_total", {"topic": "images", "outcome": "rewound"}
        )
        or 0.0
    )
    # The other partition goes on; the skipped one is sought back and its
    # records fetched with the skip are left to be delivered again.
    assert asyncio.run(delivered()) == [(fine, 83), (fine, 84)]
    assert thread.seeks == [(skipped, 77)]
    assert consumer._read_offset[skipped] == 77
    after = REGISTRY.get_sample_value(
        "vitrine_offset_holes_total", {"topic": "images", "outcome": "rewound"}
    )
    assert after == before + 1
    # Checked once per seek: what comes next is delivered as it is.
    fetched[:] = [(skipped, _Message(78)), (fine, _Message(85))]
    assert asyncio.run(delivered()) == [(skipped, 78), (fine, 85)]
    assert thread.seeks == [(skipped, 77)]
    # A fetch under way across a seek hands on records from the offset sought
    # to; the next ones follow them, and are no gap.
    consumer._resume_at = {fine: 80}
    fetched[:] = [(fine, _Message(86))]
    assert asyncio.run(delivered()) == [(fine, 86)]
    assert thread.seeks == [(skipped, 77)]
