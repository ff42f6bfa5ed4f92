"""One batch through an agent: process, route each result, deliver, then ack.

:class:`BatchStep` says what an agent does with a batch (process it, route each
result to its topic or dead-letter topic, add batch-level outputs, remember
results in the cache, count delivered results); :func:`handle_batch` runs one
batch through it and returns once every output is confirmed; :func:`run_batches`
cuts a Faust stream into micro-batches (:mod:`streams.worker.batcher`) with a few
batches in flight and acks each once it is handled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from streams.worker import metrics
from streams.worker.batcher import MicroBatcher
from streams.worker.consumed import ConsumedRecord, Rejected, from_faust_event
from streams.worker.delivery import Delivery, Send
from streams.worker.holes import OffsetWatch, Refetch, refill

__all__ = ["BatchStep", "handle_batch", "internal_error", "isolate", "run_batches"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def isolate(
    process: Callable[[Sequence[ConsumedRecord]], Awaitable[list[T]]],
    records: Sequence[ConsumedRecord],
    on_error: Callable[[ConsumedRecord, BaseException], T],
) -> list[T]:
    """Run ``process`` on the batch; if it raises, retry one record at a time.

    A bug that one record triggers must not sink its neighbours: the others go
    through, and the culprit becomes ``on_error(record, exception)``.
    """
    try:
        return await process(records)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("batch of %d failed; retrying record by record", len(records))
    out: list[T] = []
    for rec in records:
        try:
            out.extend(await process([rec]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("record %s[%d]@%d failed", rec.topic, rec.partition, rec.offset)
            out.append(on_error(rec, exc))
    return out


def internal_error(rec: ConsumedRecord, exc: BaseException) -> Rejected:
    """A record that tripped a bug: dead-lettered as ``internal.error``."""
    return Rejected(rec, "internal.error", f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class BatchStep:
    """What one agent does with a batch of consumed records."""

    agent: str
    out_topic: str
    process: Callable[[Sequence[ConsumedRecord]], Awaitable[list[Any]]]
    #: Each result's outputs: its record, or its dead letter.
    route: Callable[[Any], list[Send]]
    #: Outputs of the batch as a whole (the order agent's merged sales deltas).
    batch_outputs: Callable[[list[Any]], list[Send]] | None = None
    #: Checks against what earlier batches left, in input order, before
    #: ``remember``; returns the results to route (the integrity checks).
    check: Callable[[list[Any]], Awaitable[list[Any]]] | None = None
    #: Side effects before producing, in input order (the label cache writes).
    remember: Callable[[list[Any]], Awaitable[None]] | None = None
    #: Side effects once every output is confirmed, before the batch is acked or
    #: committed (the recommendation counts); must not raise for an outage.
    after_delivery: Callable[[list[Any]], Awaitable[None]] | None = None


async def handle_batch(
    step: BatchStep,
    records: list[ConsumedRecord],
    delivery: Delivery,
    after: Awaitable[Any] | None = None,
) -> None:
    """Process one batch and produce all its outputs; return once each is confirmed.

    ``after`` (the previous batch, when batches overlap) is awaited between
    processing and ``remember`` + producing, so side effects stay in input order.
    """
    metrics.EVENTS_IN.labels(records[0].topic).inc(len(records))
    metrics.BATCH_SIZE.labels(step.agent).observe(len(records))
    results = await isolate(step.process, records, internal_error)
    if after is not None:
        await after
    if step.check is not None:
        results = await step.check(results)
    if step.remember is not None:
        await step.remember(results)
    sends = [send for res in results for send in step.route(res)]
    if step.batch_outputs is not None:
        sends += step.batch_outputs(results)
    await delivery.deliver(sends, step.agent)
    if step.after_delivery is not None:
        await step.after_delivery(results)
    outputs = sum(not isinstance(res, Rejected) for res in results)
    metrics.EVENTS_OUT.labels(step.out_topic).inc(outputs)
    wall_ms = time.time() * 1000
    hist = metrics.END_TO_END_SECONDS.labels(step.agent)
    for rec in records:
        if rec.timestamp_ms:
            hist.observe(max(0.0, (wall_ms - rec.timestamp_ms) / 1000))


async def run_batches(
    stream: Any,
    handle: Callable[[list[ConsumedRecord], Awaitable[Any] | None], Awaitable[None]],
    *,
    max_size: int,
    max_latency_ms: int,
    in_flight: int,
    refetch: Refetch | None = None,
) -> None:
    """Consume a Faust stream in micro-batches; ack a batch once its outputs are confirmed.

    Up to ``in_flight`` batches overlap; each is handed the previous one's task
    to wait for before its ordered steps. A batch that raises crashes the agent
    (and so the worker): its events are not acked and are delivered again.
    Records a partition skipped (:mod:`streams.worker.holes`) are read again
    with ``refetch`` and processed at the head of the batch that revealed them.
    """
    stream = stream.noack()
    batches = MicroBatcher(stream.events(), max_size=max_size, max_latency_s=max_latency_ms / 1000)

    watch = OffsetWatch()

    async def one(events: list[Any], after: asyncio.Task[None] | None) -> None:
        skipped = await refill(watch.see(events), refetch)
        await handle(skipped + [from_faust_event(e) for e in events], after)
        for e in events:
            await stream.ack(e)

    running: list[asyncio.Task[None]] = []
    try:
        async for events in batches:
            running.append(asyncio.ensure_future(one(events, running[-1] if running else None)))
            if len(running) >= in_flight:
                await running.pop(0)  # raises what the batch raised: the agent crashes
        for task in running:
            await task
    finally:
        for task in running:
            task.cancel()
