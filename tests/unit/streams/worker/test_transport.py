"""The consumer thread's view of where each partition stands before a fetch."""

from __future__ import annotations

import asyncio

from aiokafka.consumer.subscription_state import Assignment
from aiokafka.structs import TopicPartition

from streams.worker.transport import _position


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
