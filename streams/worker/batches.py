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
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faust.types import TP

from streams.worker import metrics
from streams.worker.batcher import MicroBatcher
from streams.worker.consumed import ConsumedRecord, Rejected, from_faust_event
from streams.worker.delivery import Delivery, Send
from streams.worker.holes import OffsetWatch, Refetch, StallWatch, committed_offset, refill

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
    stall_after_s: float | None = None,
) -> None:
    """Consume a Faust stream in micro-batches; ack a batch once its outputs are confirmed.

    Up to ``in_flight`` batches overlap; each is handed the previous one's task
    to wait for before its ordered steps. A batch that raises crashes the agent
    (and so the worker): its events are not acked and are delivered again.
    Records a partition skipped (:mod:`streams.worker.holes`) are read again
    with ``refetch`` and processed at the head of the batch that revealed them;
    with ``stall_after_s``, a partition whose records never reached the agent,
    idle that long, is sought back to them (:class:`~streams.worker.holes.StallWatch`).
    """
    stream = stream.noack()
    batches = MicroBatcher(stream.events(), max_size=max_size, max_latency_s=max_latency_ms / 1000)

    watch = OffsetWatch(functools.partial(committed_offset, stream.app))
    running: list[asyncio.Task[None]] = []
    busy = _Busy()

    async def one(events: list[Any], after: asyncio.Task[None] | None) -> None:
        try:
            skipped = await refill(watch.see(events), refetch)
            await handle(skipped + [from_faust_event(e) for e in events], after)
            for e in events:
                await stream.ack(e)
        finally:
            busy.last = time.monotonic()

    stalls = None
    if stall_after_s is not None:
        agent = _AgentState(watch, busy, running, batches)
        stalls = asyncio.ensure_future(_watch_stalls(stream, agent, StallWatch(stall_after_s)))
    try:
        async for events in batches:
            busy.last = time.monotonic()
            running.append(asyncio.ensure_future(one(events, running[-1] if running else None)))
            if len(running) >= in_flight:
                await running.pop(0)  # raises what the batch raised: the agent crashes
        for task in running:
            await task
    finally:
        for task in running:
            task.cancel()
        if stalls is not None:
            stalls.cancel()


@dataclass
class _Busy:
    #: When the agent last received a batch or finished one (monotonic seconds).
    last: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _AgentState:
    """What the stall watch reads of the agent: offsets seen, activity, batches."""

    watch: OffsetWatch
    busy: _Busy
    running: list[asyncio.Task[None]]
    batches: MicroBatcher[Any]

    @property
    def idle(self) -> bool:
        """No batch in flight and none buffered."""
        return not any(not t.done() for t in self.running) and self.batches.buffered == 0


async def _watch_stalls(stream: Any, agent: _AgentState, stalls: StallWatch) -> None:
    """Seek back a partition whose records never reached the idle agent (:class:`StallWatch`)."""
    app = stream.app
    topics = set(getattr(stream.channel, "topics", ()))
    logger.info("stall watch on %s: %.0f s idle", ", ".join(sorted(topics)), stalls.idle_s)
    while True:
        await asyncio.sleep(min(1.0, stalls.idle_s / 4))
        try:
            await _seek_stalled(app, topics, agent, stalls)
        except Exception:  # a bug here must not stop the watch, nor the agent
            logger.exception("stall watch failed; trying again")


async def _seek_stalled(app: Any, topics: set[str], agent: _AgentState, stalls: StallWatch) -> None:
    """One look at the partitions of ``topics``; seek back the stalled ones."""
    consumer = app.consumer
    # Not while a rebalance holds the flow, nor while Faust restores the tables'
    # changelogs (the stream partitions wait, paused, for the restore): their records
    # come once it ends. A seek during the restore was followed by a restore that
    # never received another changelog record (test_rebalance, a CI run on 508af45).
    busy_elsewhere = consumer.suspend_flow.is_set() or getattr(app, "in_recovery", False)
    idle = consumer.flow_active and not busy_elsewhere and agent.idle
    paused = {(u.topic, u.partition) for u in getattr(app, "unreadable", ())}
    partitions = {}
    for tp in consumer.assignment():
        key = (tp.topic, tp.partition)
        if tp.topic not in topics or key in paused:
            continue
        expected = agent.watch.next_offset(tp.topic, tp.partition, app.consumer_generation_id)
        if expected is None:
            expected = committed_offset(app, tp.topic, tp.partition)
        highwater = consumer.highwater(tp)
        if expected is not None and highwater is not None:
            partitions[key] = (expected, highwater)
    for stall in stalls.check(time.monotonic(), agent.busy.last if idle else None, partitions):
        metrics.OFFSET_HOLES.labels(stall.topic, "stalled").inc(stall.highwater - stall.expected)
        logger.warning(
            "%s: %d offset(s) the idle agent never got in %.0f s; partition read again from there",
            stall, stall.highwater - stall.expected, stalls.idle_s,
        )  # fmt: skip
        await consumer.seek(TP(stall.topic, stall.partition), stall.expected)
