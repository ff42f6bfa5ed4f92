"""A worker's view of a whole compacted topic: read at start, then followed for good.

Some state every worker needs whole: the search index (``product-embeddings``)
and the integrity index (``listing-fingerprints``). Each is a view of a
compacted topic (principle 1: Kafka is the record): :class:`TopicFollower`
reads every partition of it, outside any consumer group and without commits,
from the beginning at start (or from a snapshot's offsets, where the view
keeps one) and then as it grows, and hands each fetch of records to the view's
``apply``. :attr:`TopicFollower.caught_up` is set once it has read up to the
end offsets it found at start: until then the view lacks records, and whoever
reads it as complete (``/similar``, the duplicate checks) waits or answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.worker import metrics

__all__ = ["SnapshotView", "TopicFollower", "View"]

logger = logging.getLogger(__name__)


class View(Protocol):
    """What a follower feeds: records (key, value) in partition order; None value: tombstone."""

    def __len__(self) -> int: ...

    def apply(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Take in a fetch of records."""


class SnapshotView(View, Protocol):
    """A view that can be saved at stop and loaded at start (so a restart reads less)."""

    def save(self, directory: Path, *, topic: str, positions: Mapping[int, int]) -> None:
        """Write the view and the offsets it covers into ``directory``."""

    def load(self, directory: Path, *, topic: str) -> dict[int, int] | None:
        """Replace the view with a snapshot; the offsets to read on from, or None."""


V = TypeVar("V", bound=View)


class TopicFollower(mode.Service, Generic[V]):
    """Reads every partition of ``topic`` into a view, for good.

    ``build`` makes the (empty) view, or None when there is nothing to follow
    (then the follower stops at once and never catches up). With ``snapshot``,
    the view (a :class:`SnapshotView`) is saved there at stop once caught up,
    and loaded from there at start.
    """

    def __init__(
        self,
        *,
        name: str,
        topic: str,
        client_config: Mapping[str, Any],
        build: Callable[[], Awaitable[V | None]],
        max_records: int = 2000,
        snapshot: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.topic = topic
        #: Where the view is saved at stop and loaded from at start (None: never).
        self.snapshot = snapshot
        self._config = dict(client_config)
        self._build = build
        self.max_records = max_records
        self.index: V | None = None
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        metrics.FOLLOWER_CAUGHT_UP.labels(name).set(0)

    @property
    def label(self) -> str:
        return f"{type(self).__name__}({self.topic})"

    def _snapshot_view(self) -> SnapshotView | None:
        index = self.index
        if self.snapshot is None or index is None:
            return None
        if not (hasattr(index, "save") and hasattr(index, "load")):
            raise TypeError(f"{type(index).__name__} keeps no snapshot")
        return index  # type: ignore[return-value]

    @mode.Service.task
    async def _follow(self) -> None:
        try:
            self.index = await self._build()
            if self.index is None:
                logger.info("%s: nothing to follow", self.label)
                return
            # No group: aiokafka then assigns this consumer every partition of the topic,
            # and with no committed offsets it starts at the earliest.
            consumer = self._consumer = AIOKafkaConsumer(
                self.topic,
                **{**self._config, "client_id": f"vitrine-{self.name}-{uuid.uuid4().hex[:8]}"},
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            view = self._snapshot_view()
            positions = (
                view.load(self.snapshot, topic=self.topic)
                if view is not None and self.snapshot
                else None
            )
            await consumer.start()
            started = time.monotonic()
            if positions is not None:
                await self._resume(consumer, positions)
            ends: dict[TopicPartition, int] | None = None
            while not self.should_stop:
                fetched = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                for records in fetched.values():
                    self.index.apply((r.key, r.value) for r in records)
                if self.caught_up.is_set():
                    continue
                if ends is None and (assigned := consumer.assignment()):
                    ends = await consumer.end_offsets(list(assigned))
                if ends is not None and await self._at(consumer, ends):
                    self.caught_up.set()
                    metrics.FOLLOWER_CAUGHT_UP.labels(self.name).set(1)
                    logger.info(
                        "%s index: %d entries from %s in %.1f s",
                        self.name, len(self.index), self.topic, time.monotonic() - started,
                    )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.should_stop:
                return
            logger.exception("reading %s failed; stopping the worker", self.topic)
            await self.crash(exc)

    @staticmethod
    async def _at(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
        """True once every partition's position has reached its offset in ``ends``."""
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _resume(self, consumer: AIOKafkaConsumer, positions: Mapping[int, int]) -> None:
        """Read on from a snapshot's offsets (the beginning of partitions it lacks)."""
        assert self.index is not None
        for _ in range(200):  # the group-less assignment follows the first metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps) if tps else {}
        if any(positions.get(tp.partition, 0) > ends[tp] for tp in tps):
            # Offsets past the end: the topic was recreated since. Read it all.
            logger.warning("%s snapshot is ahead of %s: rebuilding from the topic",
                           self.name, self.topic)  # fmt: skip
            self.index = await self._build()
            await consumer.seek_to_beginning(*tps)
            return
        for tp in tps:
            consumer.seek(tp, positions.get(tp.partition, 0))
        logger.info("%s index: %d entries from snapshot %s", self.name, len(self.index),
                    self.snapshot)  # fmt: skip

    async def on_stop(self) -> None:
        """Save a snapshot (when caught up and configured), then close the consumer."""
        consumer = self._consumer
        if consumer is None:
            return
        view = self._snapshot_view()
        if view is not None and self.snapshot is not None and self.caught_up.is_set():
            try:
                positions = {
                    tp.partition: await consumer.position(tp) for tp in consumer.assignment()
                }
                view.save(self.snapshot, topic=self.topic, positions=positions)
                logger.info("%s index: %d entries saved to %s", self.name, len(view),
                            self.snapshot)  # fmt: skip
            except Exception:  # a snapshot is an optimisation: never fail the stop for it
                logger.exception("saving the %s snapshot to %s failed", self.name, self.snapshot)
        await consumer.stop()
