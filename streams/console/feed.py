"""The console's Kafka side: review topics in, decisions out, offsets committed safely.

At start the whole compacted ``label-corrections`` topic is read, so that an
item already decided (its product and photo) is not shown again; the topic is
then followed, so decisions made in another console count too. The review
topics are read as the consumer group ``VITRINE_CONSOLE_GROUP_ID``. A decision
is produced with acks=all and awaited before its item leaves the queue, and a
review partition's offset is committed only up to its lowest pending record
(:meth:`ReviewQueue.commit_points`): a crash reads every undecided item again
and, thanks to the corrections read at start, no decided one.

The producer is built here and writes to the corrections topic only.
A review record that does not decode is logged, counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from schemas import codec
from schemas.corrections import correction_key
from schemas.errors import SchemaError
from schemas.records import LabelCorrection, ProductLabelled
from streams.console.queue import DecisionRate, Ref, ReviewQueue
from streams.settings import Settings
from streams.worker.kafka_config import aiokafka_config

__all__ = ["ConsoleFeed", "History"]

logger = logging.getLogger(__name__)

_PRODUCER_KEYS = ("bootstrap_servers", "security_protocol", "ssl_context")


class History:
    """The latest decisions about each product (a few per product), for the item's page."""

    def __init__(self, per_product: int = 5) -> None:
        self._by_product: defaultdict[str, deque[LabelCorrection]] = defaultdict(
            lambda: deque(maxlen=per_product)
        )

    def add(self, correction: LabelCorrection) -> None:
        """Remember a decision."""
        self._by_product[correction.product_id].append(correction)

    def of(self, product_id: str) -> list[LabelCorrection]:
        """Decisions about ``product_id``, newest first."""
        found = self._by_product.get(product_id)
        return list(reversed(found)) if found else []


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, feed: ConsoleFeed) -> None:
        self.feed = feed

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.feed.commit()
        self.feed.queue.drop_partitions({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        logger.info("reviewing %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Some partition is not yet read up to its end offset of ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


class ConsoleFeed:
    """Reads the review topics and corrections into the queue; publishes decisions."""

    def __init__(
        self,
        settings: Settings,
        queue: ReviewQueue,
        history: History,
        on_queued: Callable[[ProductLabelled], None] | None = None,
    ) -> None:
        self.settings = settings
        #: Called with each record queued (the console remembers where its photo is).
        self.on_queued = on_queued
        self.queue = queue
        self.history = history
        self.rate = DecisionRate()
        #: Review records skipped because they did not decode.
        self.skipped = 0
        self.ready = asyncio.Event()
        #: Set when reading a topic failed: the console then exits (to be restarted).
        self.failed = asyncio.Event()
        self._config = aiokafka_config(settings)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._corrections: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def review_topics(self) -> list[str]:
        """The topics the console reviews."""
        t = self.settings.topics
        return [t.product_review, t.listing_review]

    async def start(self) -> None:
        """Connect, read every decision so far, then start reading the review topics."""
        conf = {k: v for k, v in self._config.items() if k in _PRODUCER_KEYS}
        conf |= {k: v for k, v in self._config.items() if k.startswith("sasl")}
        self._producer = AIOKafkaProducer(
            **conf, client_id="vitrine-console", acks="all", enable_idempotence=True
        )
        await self._producer.start()
        await self._read_corrections()
        self._consumer = AIOKafkaConsumer(
            **{**self._config, "client_id": "vitrine-console"},
            group_id=self.settings.console.group_id,
            # The worker's group timeouts; no static id: consoles come and go.
            session_timeout_ms=self.settings.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._consumer.subscribe(self.review_topics, listener=_Rebalance(self))
        await self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._read_reviews()),
            asyncio.create_task(self._follow_corrections()),
        ]
        for task in self._tasks:
            task.add_done_callback(self._on_done)
        self.ready.set()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("the console's Kafka reader failed", exc_info=exc)
            self.failed.set()

    async def stop(self) -> None:
        """Commit what is decided and close every client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.commit()
        for client in (self._consumer, self._corrections, self._producer):
            if client is not None:
                await client.stop()

    async def publish(self, correction: LabelCorrection) -> None:
        """Put a decision on Kafka (acks=all, awaited), then drop its item and commit."""
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.topics.label_corrections,
            key=correction_key(correction).encode(),
            value=codec.encode(correction),
        )
        self._take(correction)
        self.rate.add(time.monotonic())
        await self.commit()

    async def commit(self) -> None:
        """Commit each assigned review partition up to its lowest pending offset."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: end
            for (topic, part), end in self.queue.commit_points().items()
            if (tp := TopicPartition(topic, part)) in assigned
        }
        if offsets:
            await consumer.commit(offsets)

    def _take(self, correction: LabelCorrection) -> None:
        self.queue.mark_decided(correction.product_id, correction.image_sha256)
        self.history.add(correction)

    def _take_values(self, values: Iterable[bytes | None]) -> None:
        for value in values:
            if value is None:
                continue  # a tombstone withdraws a decision from the worker's views only
            try:
                self._take(codec.decode_label_correction(value))
            except SchemaError as exc:
                logger.warning("skipped a label-corrections record: %s", exc)

    async def _read_corrections(self) -> None:
        topic = self.settings.topics.label_corrections
        # No group: aiokafka assigns every partition of the topic, from the earliest.
        consumer = self._corrections = AIOKafkaConsumer(
            topic,
            **{**self._config, "client_id": "vitrine-console-corrections"},
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        for _ in range(200):  # the group-less assignment follows the first metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        if not tps:
            logger.warning("%s has no partitions yet: no decisions to read", topic)
        ends = await consumer.end_offsets(tps) if tps else {}
        started, n = time.monotonic(), 0
        while await _behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                n += len(records)
                self._take_values(r.value for r in records)
        logger.info("read %d decisions from %s in %.1f s", n, topic, time.monotonic() - started)

    async def _follow_corrections(self) -> None:
        assert self._corrections is not None
        while True:
            batch = await self._corrections.getmany(timeout_ms=1000, max_records=1000)
            for records in batch.values():
                self._take_values(r.value for r in records)

    async def _read_reviews(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            # Full: pause (still polling, so the group keeps this member) until
            # reviewers decide some; the rest waits on Kafka, uncommitted.
            if self.queue.full:
                consumer.pause(*consumer.assignment())
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batch.values():
                self._queue_records(records)
            if batch:
                await self.commit()  # records that need no decision move the point too

    def _queue_records(self, records: list[Any]) -> None:
        for rec in records:
            ref = Ref(rec.topic, rec.partition, rec.offset)
            try:
                labelled = codec.decode_product_labelled(rec.value or b"")
            except SchemaError as exc:
                self.skipped += 1
                logger.warning(
                    "skipped review record %s[%d]@%d: %s", ref.topic, ref.partition, ref.offset, exc
                )
                self.queue.skip(ref)
                continue
            if self.queue.add(labelled, ref) and self.on_queued is not None:
                self.on_queued(labelled)
