"""Enrich a micro-batch of orders with the categories of their products.

One Redis MGET per batch for every distinct product in it. An order can arrive
before its product's label (both topics are produced at about the same time
upstream). Policy: an order may wait for missing labels until
``label_wait_ms`` after it was published (its record timestamp), re-reading
only the missing products every ``retry_interval_ms``; then it is emitted with
``category_status: unknown`` and ``unknown_reason: not_labelled``. An old order
(a replay, a product whose label expired) therefore never waits, and a burst
of fresh orders waits at most ``label_wait_ms`` once per batch. When Redis is
unreachable, items are ``unknown`` with ``unknown_reason: cache_unavailable``
and nothing waits.

Each enriched order also yields per (category, region) sales deltas, which the
order agent forwards, keyed by ``category|region``, to the windowed
aggregation (:mod:`streams.worker.windows`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas import codec
from schemas.records import SCHEMA_VERSION, EnrichedItem, EnrichedOrder, OrderEvent, UnknownReason
from streams.worker import metrics
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.consumed import ConsumedRecord, Rejected, decode_or_reject

__all__ = ["Enriched", "OrderEnricher", "SalesDelta", "SalesPart", "enriched_order"]

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"


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


def enriched_order(
    order: OrderEvent, items: Sequence[EnrichedItem], enriched_at: datetime
) -> EnrichedOrder:
    """``order`` with its enriched lines: the header copied, the total summed."""
    return EnrichedOrder(
        schema_version=SCHEMA_VERSION,
        event_id=order.event_id,
        occurred_at=order.occurred_at,
        order_id=order.order_id,
        customer_id=order.customer_id,
        region=order.region,
        currency=order.currency,
        created_at=order.created_at,
        items=tuple(items),
        order_total=round(sum(it.line_total for it in items), 4),
        enriched_at=enriched_at,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Enriched:
    """An enriched order ready to produce, and its sales deltas."""

    record: ConsumedRecord
    key: bytes
    value: bytes
    deltas: tuple[SalesDelta, ...]
    unknown_items: int
    #: ``value`` before encoding, for what the batch does after delivery (recommendations).
    order: EnrichedOrder


class OrderEnricher:
    """Turns batches of order records into enriched orders and dead letters."""

    def __init__(
        self,
        cache: LabelCache,
        *,
        label_wait_ms: int,
        retry_interval_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.label_wait_s = label_wait_ms / 1000
        self.retry_interval_s = retry_interval_ms / 1000
        self.clock = clock

    async def _labels(
        self, orders: dict[int, OrderEvent], records: Sequence[ConsumedRecord]
    ) -> tuple[dict[str, dict[str, Any]], UnknownReason | None]:
        """Labels of every product in ``orders``; the reason when Redis is down."""
        wanted = list(dict.fromkeys(it.product_id for o in orders.values() for it in o.items))
        labels: dict[str, dict[str, Any]] = {}
        missing = wanted
        while missing:
            try:
                got = await self.cache.get_products(missing)
            except CacheUnavailable:
                return labels, "cache_unavailable"
            labels.update({p: v for p, v in zip(missing, got, strict=True) if v is not None})
            missing = [p for p in missing if p not in labels]
            if not missing or self.label_wait_s <= 0:
                break
            # Wait only as long as the youngest order that lacks a label allows.
            still = set(missing)
            deadline = max(
                (
                    records[i].timestamp_ms / 1000 + self.label_wait_s
                    for i, o in orders.items()
                    if any(it.product_id in still for it in o.items)
                ),
                default=0.0,
            )
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            await asyncio.sleep(min(self.retry_interval_s, remaining))
        return labels, None

    async def process(self, records: Sequence[ConsumedRecord]) -> list[Enriched | Rejected]:
        """Enrich ``records``; one entry per record, in order."""
        out: list[Enriched | Rejected | None] = [None] * len(records)
        orders = decode_or_reject(records, codec.decode_order, out)
        labels, outage = await self._labels(orders, records) if orders else ({}, None)
        enriched_at = datetime.now(UTC)
        unknown_by_reason: dict[UnknownReason, int] = {}
        for i, order in orders.items():
            items = []
            sums: dict[str, list[float]] = {}
            unknown = 0
            for it in order.items:
                lab = labels.get(it.product_id)
                reason: UnknownReason = outage or "not_labelled"
                item = EnrichedItem(
                    product_id=it.product_id,
                    quantity=it.quantity,
                    unit_price=it.unit_price,
                    line_total=round(it.quantity * it.unit_price, 4),
                    category=UNKNOWN,
                    category_status="unknown",
                    unknown_reason=reason,
                )
                if lab is None:
                    unknown += 1
                    unknown_by_reason[reason] = unknown_by_reason.get(reason, 0) + 1
                else:
                    item = msgspec.structs.replace(
                        item,
                        category=str(lab["category"]),
                        category_status="labelled",
                        unknown_reason=None,
                        category_score=float(lab.get("score", 0.0)),
                        model_version=lab.get("model_version"),
                    )
                category = item.category
                items.append(item)
                acc = sums.setdefault(category, [0.0, 0.0])
                acc[0] += it.quantity
                acc[1] += item.line_total
            value = enriched_order(order, items, enriched_at)
            ts = order.created_at.timestamp()
            deltas = tuple(
                SalesDelta(
                    category=cat,
                    region=order.region,
                    currency=order.currency,
                    timestamp_s=ts,
                    units=int(units),
                    revenue=round(revenue, 4),
                    parts=(
                        SalesPart(
                            records[i].partition, records[i].offset, int(units), round(revenue, 4)
                        ),
                    ),
                )
                for cat, (units, revenue) in sums.items()
            )
            out[i] = Enriched(
                records[i], order.order_id.encode(), codec.encode(value), deltas, unknown, value
            )
        for reason, n in unknown_by_reason.items():
            metrics.ORDER_ITEMS_UNKNOWN.labels(reason).inc(n)
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]
