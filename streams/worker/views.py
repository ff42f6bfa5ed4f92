"""The Redis views of the record topics, and the builder that keeps them.

Kafka is the record and Redis holds views of it (``../shared/DESIGN.md``,
principle 1). :class:`ViewBuilder`, one consumer group over all workers, applies
``product-labels`` into the product view that order enrichment reads and
``orders-enriched`` into the recommendation sets (:mod:`streams.worker.recommend`).
The offsets a view covers are kept in Redis beside it, not in Kafka, so that a
Redis that lost state is noticed and its partitions are read again; each batch's
writes and offsets go in one pipelined round trip. :meth:`ViewBuilder.mark` and
:meth:`ViewBuilder.covers` tell enrichment whether the view is behind.
Design and rebuilds: docs/ARCHITECTURE.md ("How a view is rebuilt").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from schemas import codec
from schemas.errors import SchemaError
from schemas.records import EnrichedOrder
from streams.worker import metrics
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.recommend import Recommender
from streams.worker.state import encode_product_state, product_state_of_record

__all__ = ["Mark", "ViewBuilder"]

logger = logging.getLogger(__name__)

#: The end offsets of a record topic's partitions at one moment.
Mark = dict[int, int]


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one fetched batch writes: product states (None: delete), orders, new offsets."""

    products: dict[str, bytes | None]
    orders: list[EnrichedOrder]
    offsets: dict[TopicPartition, int]


class _Assign(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ViewBuilder) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.owner.positions.pop(tp, None)
            self.owner.targets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.owner.pending.update(assigned)
        self.owner.assigned = True


class ViewBuilder(mode.Service):
    """Applies ``product-labels`` and ``orders-enriched`` to their views in Redis."""

    def __init__(
        self,
        *,
        labels_topic: str,
        orders_topic: str,
        cache: LabelCache,
        recommender: Recommender,
        client_config: Mapping[str, Any],
        group_id: str,
        membership: Mapping[str, Any] | None = None,
        max_records: int = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.labels_topic = labels_topic
        self.orders_topic = orders_topic
        self.cache = cache
        self.recommender = recommender
        self.group_id = group_id
        self.max_records = max_records
        self._config = dict(client_config)
        #: Session timeout, heartbeat and static instance id of the group member.
        self._membership = dict(membership or {})
        self._consumer: AIOKafkaConsumer | None = None
        #: Assigned partitions -> the next offset to apply (None: from the beginning).
        self.positions: dict[TopicPartition, int | None] = {}
        #: Partitions being (re)built -> the end offset that completes them.
        self.targets: dict[TopicPartition, int] = {}
        #: Assigned partitions whose stored offsets have not been read yet.
        self.pending: set[TopicPartition] = set()
        #: Set while every assigned partition has reached its target.
        self.caught_up = asyncio.Event()
        #: The last Redis call failed (down, or refusing this worker's credentials):
        #: the views cannot advance, which readiness does not wait for.
        self.redis_unavailable = False
        #: The group has given this builder its partitions (perhaps none) at least once.
        self.assigned = False
        self._rebuild_started: float | None = None
        self._applied_since_start = 0
        self._next_verify = 0.0

    @property
    def label(self) -> str:
        return f"ViewBuilder({self.labels_topic}, {self.orders_topic})"

    @property
    def offsets_key(self) -> str:
        """The Redis hash of the offsets the views cover."""
        return f"{self.cache.prefix}:views:offsets"

    @staticmethod
    def field(tp: TopicPartition) -> str:
        """The offsets hash's field of ``tp``."""
        return f"{tp.topic}:{tp.partition}"

    # --- the loop ------------------------------------------------------------------
    @mode.Service.task
    async def _build(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            **{**self._config, "client_id": f"vitrine-views-{uuid.uuid4().hex[:8]}"},
            **self._membership,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.subscribe([self.labels_topic, self.orders_topic], listener=_Assign(self))
        try:
            await consumer.start()
            while not self.should_stop:
                await self._step(consumer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.should_stop:
                return
            logger.exception("the view builder failed; stopping the worker")
            await self.crash(exc)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        """Sync newly assigned partitions, then fetch and apply one batch."""
        if self.pending:
            try:
                await self._sync(consumer, sorted(self.pending))
            except CacheUnavailable:
                self.redis_unavailable = True
                await asyncio.sleep(0.5)
                return
        fetched = await consumer.getmany(timeout_ms=100, max_records=self.max_records)
        fetched = {tp: recs for tp, recs in fetched.items() if tp in self.positions and recs}
        try:
            if fetched:
                await self._apply(consumer, fetched)
            elif time.monotonic() >= self._next_verify and self.positions:
                # Idle: still notice a Redis that came back empty, so that the
                # orders waiting on the view are not held until the next label.
                await self._verify(consumer, list(self.positions))
        except CacheUnavailable:
            # Whether a batch landed is unknown: read the stored offsets again.
            self.redis_unavailable = True
            self.pending.update(self.positions)
            await asyncio.sleep(0.5)
            return
        self.redis_unavailable = False
        self._progress()

    async def _sync(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        """Seek ``tps`` to the offsets Redis says their views cover (the beginning if none)."""
        stored = await self._stored(tps)
        ends = await consumer.end_offsets(list(tps))
        fresh = [tp for tp in tps if stored[tp] is None]
        starts = await consumer.beginning_offsets(fresh) if fresh else {}
        for tp in tps:
            offset = stored[tp]
            known = self.positions.get(tp)
            if known is not None and (offset is None or offset < known):
                # Found here after an outage, or by _verify between two batches. (An
                # offset past ``known``: a batch landed whose reply the outage lost.)
                logger.warning(
                    "the view of %s[%d] is not where this builder left it (Redis has offset "
                    "%s, expected %s): Redis lost state; rebuilding it from %s",
                    tp.topic, tp.partition, offset, known,
                    "the beginning" if offset is None else f"offset {offset}",
                )  # fmt: skip
                metrics.VIEW_REBUILDS.labels(tp.topic).inc()
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
            self.positions[tp] = offset
            self.pending.discard(tp)
            if (starts[tp] if offset is None else offset) < ends[tp]:
                self.targets[tp] = ends[tp]
        self._progress_started()

    async def _stored(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        fields = [self.field(tp) for tp in tps]

        def fill(pipe: Any) -> None:
            pipe.hmget(self.offsets_key, fields)

        (raw,) = await self.cache.pipelined("views_offsets", fill)
        return {tp: None if v is None else int(v) for tp, v in zip(tps, raw, strict=True)}

    async def _verify(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
    ) -> list[TopicPartition]:
        """Restart the partitions whose stored offsets are not where this builder left them."""
        self._next_verify = time.monotonic() + 1.0
        stored = await self._stored(tps)
        lost = [tp for tp in tps if tp in self.positions and stored[tp] != self.positions[tp]]
        if lost:  # Redis lost or moved their offsets: read them again from what it covers
            await self._sync(consumer, lost)
        return lost

    async def _apply(
        self, consumer: AIOKafkaConsumer, fetched: Mapping[TopicPartition, list[Any]]
    ) -> None:
        """Check the stored offsets of the batch's partitions, then write the batch.

        Two round trips rather than one: checked in the same pipeline as the
        writes, a batch that follows a lost Redis would be applied, then applied
        again by the rebuild, and its orders counted twice.
        """
        lost = await self._verify(consumer, list(fetched))
        batch = self._decode({tp: recs for tp, recs in fetched.items() if tp not in lost})
        if not batch.offsets:
            return
        updates = self.recommender.updates(batch.orders)
        key = self.cache.product_key
        offsets = {self.field(tp): off for tp, off in batch.offsets.items()}

        def fill(pipe: Any) -> None:
            states = {key(p): v for p, v in batch.products.items() if v is not None}
            gone = [key(p) for p, v in batch.products.items() if v is None]
            if states:
                self.cache.queue_set_many(pipe, states)
            if gone:
                self.cache.queue_delete_many(pipe, gone)
            self.recommender.queue(pipe, updates)
            pipe.hset(self.offsets_key, mapping=offsets)

        await self.cache.pipelined("views_apply", fill)
        for tp, off in batch.offsets.items():
            if tp not in self.positions:  # revoked meanwhile
                continue
            self.positions[tp] = off
            n = len(fetched[tp])
            metrics.VIEW_RECORDS_APPLIED.labels(tp.topic).inc(n)
            self._applied_since_start += n

    def _decode(self, fetched: Mapping[TopicPartition, list[Any]]) -> _Batch:
        products: dict[str, bytes | None] = {}
        orders: list[EnrichedOrder] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            for rec in records:
                if tp.topic == self.labels_topic:
                    self._product(rec, products)
                elif rec.value is not None:
                    try:
                        orders.append(codec.decode_enriched_order(rec.value))
                    except SchemaError:
                        metrics.VIEW_RECORDS_SKIPPED.labels(tp.topic).inc()
            offsets[tp] = records[-1].offset + 1
        return _Batch(products, orders, offsets)

    def _product(self, rec: Any, products: dict[str, bytes | None]) -> None:
        if rec.key is None:
            metrics.VIEW_RECORDS_SKIPPED.labels(rec.topic).inc()
            return
        product_id = rec.key.decode("utf-8", "replace")
        if rec.value is None:  # a tombstone: the product is gone
            products[product_id] = None
            return
        got = product_state_of_record(rec.value)
        if got is None:
            metrics.VIEW_RECORDS_SKIPPED.labels(rec.topic).inc()
            return
        products[got[0]] = encode_product_state(got[1])

    # --- progress -----------------------------------------------------------------
    def _progress_started(self) -> None:
        if not self.targets:
            return
        if self.caught_up.is_set() or self._rebuild_started is None:
            self._rebuild_started = time.monotonic()
            self._applied_since_start = 0
        self.caught_up.clear()
        metrics.VIEW_CAUGHT_UP.set(0)

    def _progress(self) -> None:
        """Drop reached targets; set :attr:`caught_up` when none is left."""
        for tp, end in list(self.targets.items()):
            pos = self.positions.get(tp)
            if tp not in self.positions or (pos is not None and pos >= end):
                del self.targets[tp]
        metrics.VIEW_REBUILD_BEHIND.set(self.behind)
        if self.targets or self.pending or self.caught_up.is_set() or not self.assigned:
            return
        took = time.monotonic() - (self._rebuild_started or time.monotonic())
        metrics.VIEW_CAUGHT_UP.set(1)
        metrics.VIEW_REBUILD_SECONDS.set(took)
        logger.info(
            "views caught up: %d records applied in %.1f s (%d partitions)",
            self._applied_since_start, took, len(self.positions),
        )  # fmt: skip
        self.caught_up.set()

    # --- coverage, for order enrichment ------------------------------------------------
    async def mark(self, topic: str | None = None) -> Mark:
        """The end offsets of a record topic now (``product-labels`` by default)."""
        topic = topic or self.labels_topic
        consumer = self._consumer
        if consumer is None:
            raise CacheUnavailable("the view builder has not started")
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise CacheUnavailable(f"no metadata for {topic} yet")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}

    async def covers(self, mark: Mark, topic: str | None = None) -> bool:
        """True once the view has applied every record of ``topic`` before ``mark``.

        Whichever builder of the group applied them. Raises
        :class:`~streams.worker.cache.CacheUnavailable` when Redis is down.
        """
        tps = [TopicPartition(topic or self.labels_topic, p) for p in mark]
        stored = await self._stored(tps)
        return all((stored[tp] or 0) >= mark[tp.partition] for tp in tps)

    @property
    def applied(self) -> int:
        """Records applied since the last (re)build started."""
        return self._applied_since_start

    @property
    def behind(self) -> int:
        """Records still to apply in the partitions being (re)built here."""
        return sum(end - (self.positions.get(tp) or 0) for tp, end in self.targets.items())

    async def on_stop(self) -> None:
        """Leave the group (the views' offsets are in Redis: nothing to commit)."""
        if self._consumer is not None:
            await self._consumer.stop()
