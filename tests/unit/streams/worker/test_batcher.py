"""Flush rules of the micro-batcher: size, latency from the first item, end of source."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.batcher import MicroBatcher


async def timed_source(plan: list[tuple[float, int]]) -> AsyncIterator[int]:
    """Yield each item after sleeping its delay (seconds)."""
    for delay, item in plan:
        if delay:
            await asyncio.sleep(delay)
        yield item


async def collect(batcher: MicroBatcher[int]) -> list[tuple[float, list[int]]]:
    t0 = time.monotonic()
    return [(time.monotonic() - t0, b) async for b in batcher]


def test_flushes_at_max_size_without_waiting_for_the_timer() -> None:
    src = timed_source([(0, i) for i in range(10)])
    out = asyncio.run(collect(MicroBatcher(src, max_size=4, max_latency_s=30)))
    assert [b for _, b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert out[-1][0] < 5, "the end of the source flushes the rest at once"


def test_latency_is_counted_from_the_first_item_of_the_batch() -> None:
    # The first item arrives late (0.3 s); a timer started at the previous flush
    # (Faust's take) would flush it almost at once. Ours waits 0.2 s from that
    # item, so the second item (0.1 s later) joins the same batch.
    src = timed_source([(0.3, 1), (0.1, 2), (0.4, 3)])
    out = asyncio.run(collect(MicroBatcher(src, max_size=100, max_latency_s=0.2)))
    assert [b for _, b in out] == [[1, 2], [3]]
    first_at = out[0][0]
    assert 0.45 <= first_at < 1.5, first_at


def test_a_batch_never_waits_longer_than_the_latency_bound() -> None:
    # Items keep trickling in, each inside the bound; the batch is still cut
    # at the bound measured from its first item.
    src = timed_source([(0.05, i) for i in range(20)])
    out = asyncio.run(collect(MicroBatcher(src, max_size=1000, max_latency_s=0.3)))
    assert len(out) >= 2
    assert [x for _, b in out for x in b] == list(range(20))


def test_source_error_is_raised_after_the_items_before_it() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("broker gone")

    got: list[list[int]] = []

    async def run() -> None:
        async for b in MicroBatcher(broken(), max_size=10, max_latency_s=0.05):
            got.append(b)

    with pytest.raises(RuntimeError, match="broker gone"):
        asyncio.run(run())
    assert got == [[1, 2]]


def test_closing_early_stops_reading_the_source() -> None:
    reads: list[int] = []

    async def endless() -> AsyncIterator[int]:
        i = 0
        while True:
            reads.append(i)
            yield i
            i += 1
            await asyncio.sleep(0)

    async def run() -> list[int]:
        async for b in MicroBatcher(endless(), max_size=5, max_latency_s=1):
            return b
        return []

    first = asyncio.run(run())
    assert first == [0, 1, 2, 3, 4]
    # The pump is bounded by its queue (2 x max_size) and cancelled on close.
    assert len(reads) <= 5 + 2 * 5 + 1


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(timed_source([]), max_size=0, max_latency_s=1)
    with pytest.raises(ValueError, match="max_latency_s"):
        MicroBatcher(timed_source([]), max_size=1, max_latency_s=0)


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.002, 0.01]), max_size=60),
    max_size=st.integers(1, 16),
)
def test_batches_preserve_order_and_respect_max_size(gaps: list[float], max_size: int) -> None:
    src = timed_source([(g, i) for i, g in enumerate(gaps)])
    out = asyncio.run(collect(MicroBatcher(src, max_size=max_size, max_latency_s=0.005)))
    batches = [b for _, b in out]
    assert [x for b in batches for x in b] == list(range(len(gaps)))
    assert all(1 <= len(b) <= max_size for b in batches)
