"""Micro-batching with a latency bound that starts at the first item of a batch.

Faust's ``stream.take(n, within=t)`` waits ``t`` from the end of the previous
flush, not from the first buffered item, and it acks events itself. This
batcher flushes when ``max_size`` items are buffered **or** ``max_latency_s``
has passed since the first item of the batch arrived, whichever comes first,
and leaves acking to the caller, who acks only after the batch's outputs are
produced (at-least-once).

A pump task reads the source into a bounded queue, so a slow batch applies
back-pressure to the consumer instead of buffering without limit. When the
source ends, the items already read are flushed as a last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Generic, TypeVar

__all__ = ["MicroBatcher"]

T = TypeVar("T")

_END = object()


class MicroBatcher(Generic[T]):
    """Turn an async iterable of items into lists of at most ``max_size`` items."""

    def __init__(
        self, source: AsyncIterable[T], *, max_size: int, max_latency_s: float, queue_size: int = 0
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_latency_s <= 0:
            raise ValueError(f"max_latency_s must be > 0, got {max_latency_s}")
        self._source = source
        self.max_size = max_size
        self.max_latency_s = max_latency_s
        self._queue: asyncio.Queue[object] = asyncio.Queue(queue_size or 2 * max_size)
        self._pump_task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def _pump(self) -> None:
        try:
            async for item in self._source:
                await self._queue.put(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # re-raised in the consumer of batches
            self._error = exc
        await self._queue.put(_END)

    @property
    def buffered(self) -> int:
        """Items taken from the source and not yet in a batch."""
        return self._queue.qsize()

    def __aiter__(self) -> AsyncIterator[list[T]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[T]]:
        self._pump_task = asyncio.ensure_future(self._pump())
        try:
            ended = False
            while not ended:
                first = await self._queue.get()
                if first is _END:
                    break
                batch: list[T] = [first]  # type: ignore[list-item]
                deadline = time.monotonic() + self.max_latency_s
                while len(batch) < self.max_size:
                    # Take what is already queued without waiting.
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(self._queue.get(), remaining)
                        except TimeoutError:
                            break
                    if item is _END:
                        ended = True
                        break
                    batch.append(item)  # type: ignore[arg-type]
                yield batch
            if self._error is not None:
                raise self._error
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop reading the source."""
        task, self._pump_task = self._pump_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
