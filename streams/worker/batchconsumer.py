"""A batch consumer for high-rate topics, run as a service of the Faust worker.

The order agent consumes ``orders`` through this instead of a Faust stream,
because Faust's per-event path costs more CPU than an order's whole budget at the
5,000 orders/s target (measured with ``vitrine bench consume``: docs/PERFORMANCE.md).
It keeps the agents' at-least-once semantics: a batch is committed only once
``handle`` has confirmed every output, and on a rebalance or SIGTERM the in-flight
batch finishes and is committed first; a ``handle`` that raises crashes the
worker; an unreadable record batch pauses only its partition
(:mod:`streams.worker.unreadable`). It has a consumer group of its own, which
inherits the Faust group's offsets on first start. Design: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from streams.worker.consumed import ConsumedRecord
from streams.worker.unreadable import UNREADABLE_ERRORS, UnreadablePartition, find_unreadable

__all__ = ["BatchConsumer", "to_record"]

logger = logging.getLogger(__name__)

Handler = Callable[[list[ConsumedRecord]], Awaitable[None]]


def to_record(msg: Any) -> ConsumedRecord:
    """Build a :class:`ConsumedRecord` from an aiokafka ``ConsumerRecord``."""
    return ConsumedRecord(
        key=msg.key,
        value=msg.value if msg.value is not None else b"",
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp or 0,
        headers=tuple(msg.headers or ()),
    )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        logger.info(
            "%s: assigned %s",
            self.owner.group_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )


class BatchConsumer(mode.Service):
    """Consume ``topics`` in batches; commit a batch's offsets after ``handle`` returns."""

    def __init__(
        self,
        *,
        topics: Sequence[str],
        group_id: str,
        handle: Handler,
        client_config: Mapping[str, Any],
        max_records: int,
        max_latency_ms: int,
        before_start: Callable[[], Awaitable[Any]] | None = None,
        inherit_offsets_from: str | None = None,
        membership: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.topics = list(topics)
        self.group_id = group_id
        self._handle = handle
        self._config = dict(client_config)
        # Only for the consumer that joins the group (session timeout, heartbeat,
        # static instance id); the one that seeds inherited offsets never joins.
        self._membership = dict(membership or {})
        self.max_records = max_records
        self.max_latency_ms = max_latency_ms
        self._before_start = before_start
        self.inherit_offsets_from = inherit_offsets_from
        self.consumer: AIOKafkaConsumer | None = None
        # Next offset to commit per partition: processed, maybe not yet committed.
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        # Held while a batch is handled and committed; a revoke or stop waits for it.
        self._batch_lock = asyncio.Lock()
        self._stopping = False
        self.running = asyncio.Event()
        #: Partitions paused on a batch this consumer cannot read (the worker is not ready).
        self.unreadable: list[UnreadablePartition] = []

    @property
    def label(self) -> str:
        return f"BatchConsumer({self.group_id})"

    @mode.Service.task
    async def _consume(self) -> None:
        try:
            if self._before_start is not None:
                await self._before_start()
            if self.inherit_offsets_from:
                await self._inherit_offsets()
            consumer = AIOKafkaConsumer(
                **self._config,
                **self._membership,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            consumer.subscribe(self.topics, listener=_Rebalance(self))
            self.consumer = consumer  # set first: a stop during start() still closes it
            await consumer.start()
            self.running.set()
            logger.info("%s: consuming %s", self.group_id, ", ".join(self.topics))
            while not self._stopping:
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=self.max_latency_ms, max_records=self.max_records
                    )
                except UNREADABLE_ERRORS as exc:
                    found, fetched = await find_unreadable(consumer, self._processed, exc)
                    self.unreadable += found
                if fetched:
                    await self._run_batch(fetched)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._stopping:  # the consumer was closed under a fetch
                return
            logger.exception("%s: consuming failed; stopping the worker", self.group_id)
            await self.crash(exc)

    async def _run_batch(self, fetched: Mapping[TopicPartition, list[Any]]) -> None:
        async with self._batch_lock:
            if self._stopping:
                return  # fetched after stop began: not handled, not committed, redelivered
            assigned = self.consumer.assignment() if self.consumer else set()
            # A revoke between fetch and lock: those records now belong to another member.
            fetched = {tp: msgs for tp, msgs in fetched.items() if tp in assigned}
            if not fetched:
                return
            await self._handle([to_record(m) for msgs in fetched.values() for m in msgs])
            for tp, msgs in fetched.items():
                self._processed[tp] = msgs[-1].offset + 1
            await self._commit()

    async def _commit(self) -> None:
        pending = {tp: off for tp, off in self._processed.items() if self._committed.get(tp) != off}
        if not pending or self.consumer is None:
            return
        try:
            await self.consumer.commit(pending)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the new owner re-reads from the last commit.
            logger.warning("%s: commit failed (%s); batch may be redelivered", self.group_id, exc)
        except KafkaError as exc:
            # Offsets only grow: the next batch's commit covers these.
            logger.warning("%s: commit failed (%s); will retry", self.group_id, exc)
        else:
            self._committed.update(pending)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._batch_lock:
            await self._commit()
            for tp in revoked:
                self._processed.pop(tp, None)
                self._committed.pop(tp, None)
        if revoked:
            logger.info(
                "%s: revoked %s",
                self.group_id,
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(revoked)),
            )

    async def _inherit_offsets(self) -> None:
        """Copy ``inherit_offsets_from``'s commits for partitions this group never committed.

        Done before joining, so no fetch can start from the earliest offset first.
        A group that is already active (another upgraded worker seeded it) refuses
        the commit; that is fine.
        """
        admin_keys = inspect.signature(AIOKafkaAdminClient).parameters
        admin = AIOKafkaAdminClient(**{k: v for k, v in self._config.items() if k in admin_keys})
        own = AIOKafkaConsumer(**self._config, group_id=self.group_id, enable_auto_commit=False)
        await admin.start()
        await own.start()
        try:
            ours = await admin.list_consumer_group_offsets(self.group_id)
            theirs = await admin.list_consumer_group_offsets(str(self.inherit_offsets_from))
            seed = {
                tp: meta.offset
                for tp, meta in sorted(theirs.items())
                if tp.topic in self.topics and tp not in ours and meta.offset >= 0
            }
            if seed:
                own.assign(list(seed))
                await own.commit(seed)
                logger.info(
                    "%s: starts %s where group %s left off",
                    self.group_id,
                    ", ".join(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in seed.items()),
                    self.inherit_offsets_from,
                )
        except KafkaError as exc:
            logger.warning(
                "%s: offsets of group %s not inherited (%s)",
                self.group_id, self.inherit_offsets_from, exc,
            )  # fmt: skip
        finally:
            await own.stop()
            await admin.close()

    async def lag(self) -> dict[TopicPartition, int]:
        """Records behind the end of each assigned partition (end as of the last fetch)."""
        consumer = self.consumer
        if consumer is None:
            return {}
        out = {}
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            done = self._processed.get(tp)
            if done is None:  # nothing handled yet: the fetch position
                done = await consumer.position(tp)
            out[tp] = max(0, hw - done)
        return out

    async def on_stop(self) -> None:
        """Finish the in-flight batch, commit, and leave the group."""
        self._stopping = True
        async with self._batch_lock:
            await self._commit()
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()
            logger.info("%s: stopped; offsets committed", self.group_id)
