"""Windowed category-sales aggregation: tumbling windows per ``category|region``.

The order agent forwards each order's :class:`SalesDelta` to an internal topic
keyed ``category|region``, so each key's windows belong to one partition, hence one
worker. The sales agent folds them into a Faust tumbling-window table by order
time, and a timer emits changed windows to ``category-sales``, keyed by window
(:func:`schemas.sales.category_sales_key`) so that compaction keeps every window.
An order redelivered is counted once (:class:`SalesAggregate`), and windows
expire by order time against a watermark (:class:`EventTimeWindow`), not the wall
clock, so back-filled history is kept; a delta for an expired window is late and
not counted. Why, and what to do with late orders: docs/DELIVERY.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from aiokafka.partitioner import murmur2
from faust.windows import TumblingWindow

from schemas import codec
from schemas.records import SCHEMA_VERSION, CategorySales
from schemas.sales import category_sales_event_id, category_sales_key, season_of
from streams.worker import metrics
from streams.worker.delivery import Delivery

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = [
    "EventTimeWindow",
    "SalesAggregate",
    "SalesAggregation",
    "SalesDelta",
    "SalesPart",
    "SalesWindows",
    "decode_delta",
    "deltas_partition",
    "encode_delta",
    "merge_deltas",
]

logger = logging.getLogger(__name__)


class SalesPart(msgspec.Struct, frozen=True, array_like=True):
    """One order's share of a delta, with where the order was read from.

    The window aggregate counts a part only if its offset is past the highest
    it has counted from that orders partition for that window: a redelivered
    order (a kill between producing and committing, a rebalance) is counted
    once. A partition's orders reach one key in offset order (one consumer per
    partition, one producer, deltas keyed by ``category|region``), so one
    offset per orders partition per window is all the state this needs.
    """

    partition: int
    offset: int
    units: int
    revenue: float


class SalesDelta(msgspec.Struct, frozen=True):
    """What one or more orders add to one (category, region) window."""

    category: str
    region: str
    currency: str
    # The (latest) order's creation time. Named "timestamp" on the internal
    # deltas topic, as before the unit was in the name.
    timestamp_s: float = msgspec.field(name="timestamp")
    units: int = 0
    revenue: float = 0.0
    orders: int = 1
    # Each order's share; empty in deltas written before parts existed, which
    # are then counted as they come (at-least-once).
    parts: tuple[SalesPart, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.category}|{self.region}"


_delta_decoder = msgspec.json.Decoder(SalesDelta)
_encoder = msgspec.json.Encoder()


def encode_delta(delta: SalesDelta) -> bytes:
    """Wire form of a delta on the internal repartition topic."""
    return _encoder.encode(delta)


def decode_delta(data: bytes) -> SalesDelta:
    """Inverse of :func:`encode_delta`."""
    return _delta_decoder.decode(data)


def merge_deltas(deltas: Iterable[SalesDelta], window_s: int) -> list[SalesDelta]:
    """Sum the deltas that fall in the same (category, region, currency, window).

    A batch of orders then costs one message per window it touches on the
    internal topic, and one table update each, instead of one per order line.
    """
    merged: dict[tuple[str, str, str, float], SalesDelta] = {}
    for d in deltas:
        key = (d.category, d.region, d.currency, d.timestamp_s - d.timestamp_s % window_s)
        prev = merged.get(key)
        merged[key] = (
            d
            if prev is None
            else msgspec.structs.replace(
                prev,
                timestamp_s=max(prev.timestamp_s, d.timestamp_s),
                units=prev.units + d.units,
                revenue=round(prev.revenue + d.revenue, 4),
                orders=prev.orders + d.orders,
                parts=prev.parts + d.parts,
            )
        )
    return list(merged.values())


class EventTimeWindow(TumblingWindow):
    """A tumbling window that expires by order time, not by the wall clock.

    Faust's table cleanup calls ``stale(window_end, time.time())``; this one
    ignores the wall clock and compares with :attr:`watermark_s`: the *slowest*
    of this worker's deltas partitions' newest order times (Kafka Streams calls
    it stream time). Partitions are read at their own pace, and in a back-fill a
    week of order time passes in a fraction of a second, so the newest time
    seen on any partition ran ahead of the others by more than a week and made
    their on-time orders late (measured on a simulated year: 61% of its
    revenue went uncounted). A partition that has had no delta for ``idle_s`` of wall time stops
    holding the watermark back (a region that stopped selling must not keep
    every window forever), and the watermark never moves back, so a window once
    expired stays expired. An order stamped in the future (a bad clock
    upstream) counts no further than one window past now.
    """

    def __init__(
        self,
        size_s: float,
        expires_s: float,
        clock: Callable[[], float] = time.time,
        idle_s: float = 60.0,
    ) -> None:
        super().__init__(size_s, expires_s)
        self.watermark_s = 0.0
        self.idle_s = idle_s
        self._clock = clock
        # Deltas partition -> (newest order time, monotonic time of its last delta).
        self._partitions: dict[int, tuple[float, float]] = {}
        self._late_logged_at = -60.0

    def observe(self, partition: int, timestamp_s: float) -> None:
        """Note an order time read from ``partition``; advance the watermark."""
        capped = min(timestamp_s, self._clock() + self.size)
        newest, _ = self._partitions.get(partition, (0.0, 0.0))
        now = time.monotonic()
        self._partitions[partition] = (max(newest, capped), now)
        live = [t for t, seen in self._partitions.values() if now - seen <= self.idle_s]
        if live:
            self.watermark_s = max(self.watermark_s, min(live))

    def stale(self, timestamp: float, latest_timestamp: float = 0.0) -> bool:
        """True when the window ending at ``timestamp`` has expired (Faust's cleanup asks)."""
        if not self.watermark_s or self.expires is None:
            return False
        return timestamp <= self.current(self.watermark_s - self.expires)[0]

    def late(self, timestamp_s: float) -> bool:
        """True when the window holding ``timestamp_s`` has expired (or may be deleted)."""
        return self.stale(self.current(timestamp_s)[1])

    def log_late(self, delta: SalesDelta) -> None:
        """Say that a late delta was not counted, at most once a minute."""
        now = time.monotonic()
        if now - self._late_logged_at >= 60.0:
            self._late_logged_at = now
            logger.warning(
                "late orders not counted in category-sales: %s at %s is more than "
                "sales_window_expires_s=%d (VITRINE_SALES_WINDOW_EXPIRES_S) behind the "
                "watermark %s; its window has expired (see vitrine_sales_late_orders_total)",
                delta.key,
                datetime.fromtimestamp(delta.timestamp_s, UTC).isoformat(),
                self.expires,
                datetime.fromtimestamp(self.watermark_s, UTC).isoformat(),
            )


@dataclasses.dataclass(slots=True)
class SalesAggregate:
    """Running totals of one (category, region) window."""

    orders: int = 0
    units: int = 0
    revenue: float = 0.0
    currency: str = ""
    last_order_at_s: float = 0.0
    # Orders partition (as a string: JSON keys) -> highest offset counted here.
    counted_to: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, delta: SalesDelta) -> int:
        """Fold a delta (one or more orders) into the totals; return the orders skipped.

        An order already counted (its offset at or below the partition's
        watermark) is skipped: redeliveries do not count twice.
        """
        self.currency = self.currency or delta.currency
        self.last_order_at_s = max(self.last_order_at_s, delta.timestamp_s)
        if not delta.parts:  # written before parts existed
            self.orders += delta.orders
            self.units += delta.units
            self.revenue = round(self.revenue + delta.revenue, 4)
            return 0
        skipped = 0
        for part in delta.parts:
            key = str(part.partition)
            if part.offset <= self.counted_to.get(key, -1):
                skipped += 1
                continue
            self.counted_to[key] = part.offset
            self.orders += 1
            self.units += part.units
            self.revenue = round(self.revenue + part.revenue, 4)
        return skipped

    def to_json(self) -> dict[str, Any]:
        """Table value (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> SalesAggregate:
        """Inverse of :meth:`to_json`; an empty value is an empty aggregate."""
        if not value:
            return cls()
        if "last_order_at" in value:  # written before the unit was in the name
            value = {**value, "last_order_at_s": value["last_order_at"]}
            del value["last_order_at"]
        return cls(**value)


class SalesWindows:
    """Window arithmetic and the pending (changed, not yet emitted) windows."""

    def __init__(self, size_s: int) -> None:
        self.size_s = size_s
        self._dirty: dict[tuple[str, float], SalesAggregate] = {}

    def window_start(self, timestamp: float) -> float:
        """Start (epoch seconds) of the tumbling window holding ``timestamp``."""
        return timestamp - (timestamp % self.size_s)

    def changed(self, key: str, timestamp: float, agg: SalesAggregate) -> None:
        """Record that the window of ``key`` around ``timestamp`` now holds ``agg``."""
        self._dirty[(key, self.window_start(timestamp))] = agg

    def drain(self, owned: Callable[[str], bool] = lambda key: True) -> list[tuple[str, bytes]]:
        """Encoded CategorySales for every changed window of an ``owned`` key; forget them.

        The windows of other keys stay pending (a rebalance is deciding who owns them).
        """
        dirty = {k: agg for k, agg in self._dirty.items() if owned(k[0])}
        for k in dirty:
            del self._dirty[k]
        now = datetime.now(UTC)
        out = []
        for (key, start), agg in dirty.items():
            category, region = key.split("|", 1)
            ws = datetime.fromtimestamp(start, UTC)
            we = datetime.fromtimestamp(start + self.size_s, UTC)
            value = CategorySales(
                schema_version=SCHEMA_VERSION,
                event_id=category_sales_event_id(category, region, ws),
                occurred_at=datetime.fromtimestamp(agg.last_order_at_s, UTC),
                category=category,
                region=region,
                window_start=ws,
                window_end=we,
                season=season_of(ws),
                orders=agg.orders,
                units=agg.units,
                revenue=agg.revenue,
                currency=agg.currency or "XXX",
                updated_at=now,
            )
            out.append((category_sales_key(category, region, ws), codec.encode(value)))
        return out

    def keep(self, owned: Callable[[str], bool]) -> int:
        """Forget the pending windows of keys no longer ``owned``; return how many."""
        gone = [k for k in self._dirty if not owned(k[0])]
        for k in gone:
            del self._dirty[k]
        return len(gone)

    @property
    def pending(self) -> int:
        return len(self._dirty)


def deltas_partition(key: str, partitions: int) -> int:
    """The deltas partition of ``category|region``: the producer's default partitioner.

    murmur2 of the key bytes, as Kafka's Java client and aiokafka place a keyed
    record (the order agent produces deltas without a partition of its own).
    """
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class SalesAggregation:
    """The deltas topic folded into the window table, and the changed windows emitted.

    :meth:`aggregate` is the body of the ``aggregate_sales`` agent and
    :meth:`emit` the body of its timer; :mod:`streams.worker.app` wires both.

    Across a rebalance, a worker emits only the windows of the deltas
    partitions it owns, and the owner after each rebalance emits every window
    of its partitions again from the table it restored: the changes a worker
    made after its last emit (it left, was killed, or lost the partition)
    would otherwise reach ``category-sales`` only with that window's next
    order, and an emit of the old owner's, late, could overwrite the new
    owner's newer totals (both seen as windows a few orders short).
    """

    def __init__(self, app: faust.App, s: Settings, delivery: Delivery, deltas_topic: str) -> None:
        self.windows = SalesWindows(s.orders.sales_window_s)
        self.window = EventTimeWindow(s.orders.sales_window_s, s.orders.sales_window_expires_s)
        self.table = (
            app.Table(
                "category-sales-windows",
                default=dict,
                schema=faust.Schema(key_serializer="json", value_serializer="json"),
                partitions=s.topics.partitions,
            )
            .using_window(self.window)
            .relative_to(lambda event: decode_delta(event.value).timestamp_s)  # type: ignore[attr-defined]
        )
        self.table.table.on_recover(self.on_recovered)
        self.app = app
        self.delivery = delivery
        self.sales_topic = s.topics.category_sales
        self.deltas_topic = deltas_topic
        self.partitions = s.topics.partitions
        #: The deltas partitions this worker owns; None until the first recovery.
        self.owned: set[int] | None = None

    def owns(self, key: str) -> bool:
        """True when this worker owns the deltas partition of ``key`` (``category|region``)."""
        return self.owned is None or deltas_partition(key, self.partitions) in self.owned

    def on_revoked(self) -> None:
        """A rebalance began: emit nothing until it says which partitions are ours."""
        self.owned = set()

    async def on_recovered(self) -> None:
        """The table is restored after a rebalance: own its partitions, emit their windows."""
        self.owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.deltas_topic
        }
        dropped = self.windows.keep(self.owns)
        again = 0
        for stored_key, value in list(self.table.table.data.items()):
            key, (start, _end) = stored_key
            if self.owns(key):
                self.windows.changed(key, start, SalesAggregate.from_json(value))
                again += 1
        logger.info(
            "sales windows: deltas partitions %s owned; %d window(s) to emit again, "
            "%d pending of other partitions dropped (their owner emits them)",
            sorted(self.owned), again, dropped,
        )  # fmt: skip

    async def aggregate(self, events: AsyncIterator[Any]) -> None:
        """Fold each delta event into its window; a delta for an expired window is late."""
        async for event in events:
            delta = decode_delta(event.value)
            if self.window.late(delta.timestamp_s):
                metrics.SALES_LATE.inc(delta.orders)
                self.window.log_late(delta)
                continue
            self.window.observe(event.message.partition, delta.timestamp_s)
            key = delta.key
            # value(), not current(): current() reads the window of the record's
            # Kafka timestamp (when the delta was produced), while writes go to the
            # window of the order's own time (relative_to); orders placed in an
            # earlier window than they are processed in were read from the wrong
            # window and overwrote their own with it.
            agg = SalesAggregate.from_json(self.table[key].value(event))
            if skipped := agg.add(delta):
                metrics.SALES_DUPLICATES.inc(skipped)
            self.table[key] = agg.to_json()
            self.windows.changed(key, delta.timestamp_s, agg)

    async def emit(self) -> None:
        """Produce every window changed since the last call to category-sales."""
        pending = self.windows.drain(self.owns)
        if not pending:
            return
        d = self.delivery
        await d.deliver(
            [d.record(self.sales_topic, k.encode(), v) for k, v in pending], "category sales"
        )
        metrics.EVENTS_OUT.labels(self.sales_topic).inc(len(pending))
