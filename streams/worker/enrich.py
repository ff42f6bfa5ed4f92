"""Enrich a micro-batch of orders with the categories of their products.

One Redis MGET per batch from the product view (:mod:`streams.worker.views`). An
order may arrive before its product's label, so it may wait for it until
``label_wait_ms`` after it was published (a replayed order never waits). A product
whose category a reviewer gave is ``corrected``, one the model gave ``labelled``. A product
missing from the view is called ``unknown`` only once the view covers every label
written before the lookup (:class:`ProductCoverage`); while Redis is down or the
view is behind, the batch is held, for at most ``hold_max_ms``, after which its
missing items go out ``unknown`` (``cache_unavailable``) so that an outage cannot
stop the partition for good. Each order also yields per (category, region) sales
deltas for :mod:`streams.worker.windows`. Runbook: docs/OPERATIONS.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from schemas import codec
from schemas.records import SCHEMA_VERSION, EnrichedItem, EnrichedOrder, OrderEvent, UnknownReason
from streams.worker import metrics
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.consumed import ConsumedRecord, Rejected, decode_or_reject
from streams.worker.state import ProductState
from streams.worker.windows import SalesDelta, SalesPart

__all__ = [
    "Enriched",
    "OrderEnricher",
    "ProductCoverage",
    "enriched_order",
]

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"


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


class ProductCoverage(Protocol):
    """Whether the product view has applied the label records up to a moment."""

    async def mark(self) -> dict[int, int]:
        """The record's end offsets now."""
        ...

    async def covers(self, mark: dict[int, int]) -> bool:
        """True once the view has applied everything before ``mark``."""
        ...


class OrderEnricher:
    """Turns batches of order records into enriched orders and dead letters."""

    def __init__(
        self,
        cache: LabelCache,
        *,
        label_wait_ms: int,
        retry_interval_ms: int,
        hold_max_ms: int = 120_000,
        coverage: ProductCoverage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.label_wait_s = label_wait_ms / 1000
        self.retry_interval_s = retry_interval_ms / 1000
        self.hold_max_s = hold_max_ms / 1000
        #: None: a product missing from the view is taken as not labelled (no record to ask).
        self.coverage = coverage
        self.clock = clock

    def _wait_left(
        self, orders: dict[int, OrderEvent], records: Sequence[ConsumedRecord], missing: list[str]
    ) -> float:
        """How long the youngest order that lacks a label may still wait for it."""
        if self.label_wait_s <= 0:
            return 0.0
        still = set(missing)
        deadline = max(
            (
                records[i].timestamp_ms / 1000 + self.label_wait_s
                for i, o in orders.items()
                if any(it.product_id in still for it in o.items)
            ),
            default=0.0,
        )
        return deadline - self.clock()

    async def _covered(self, mark: dict[int, int] | None) -> tuple[bool, dict[int, int] | None]:
        """Whether the view covers the label records up to ``mark`` (taken now if None)."""
        assert self.coverage is not None
        try:
            if mark is None:
                mark = await self.coverage.mark()
            return await self.coverage.covers(mark), mark
        except CacheUnavailable:
            return False, mark

    async def _labels(
        self, orders: dict[int, OrderEvent], records: Sequence[ConsumedRecord]
    ) -> tuple[dict[str, ProductState], UnknownReason | None]:
        """States of every product in ``orders``; the reason when the hold ran out."""
        wanted = list(dict.fromkeys(it.product_id for o in orders.values() for it in o.items))
        labels: dict[str, ProductState] = {}
        missing = wanted
        started = self.clock()
        mark: dict[int, int] | None = None
        confirmed = False
        reason: UnknownReason | None = None
        while missing:
            try:
                got = await self.cache.get_products(missing)
            except CacheUnavailable:
                got = None
            if got is not None:
                labels.update({p: v for p, v in zip(missing, got, strict=True) if v is not None})
                missing = [p for p in missing if p not in labels]
                if not missing:
                    break
                if (left := self._wait_left(orders, records, missing)) > 0:
                    await asyncio.sleep(min(self.retry_interval_s, left))
                    continue
                if self.coverage is None or confirmed:
                    break
                covered, mark = await self._covered(mark)
                if covered:
                    # Read once more: labels applied since the lookup count.
                    confirmed = True
                    continue
            if self.clock() - started >= self.hold_max_s:
                reason = "cache_unavailable"
                logger.warning(
                    "%d products of an order batch still unknown after holding it %.0f s "
                    "(order_hold_max_ms): Redis %s; emitting them as unknown",
                    len(missing),
                    self.hold_max_s,
                    "is down" if got is None else "has not caught up with product-labels",
                )
                break
            await asyncio.sleep(self.retry_interval_s)
        held = self.clock() - started
        if held > self.label_wait_s + self.retry_interval_s:
            metrics.ORDERS_HELD_SECONDS.observe(held)
        return labels, reason

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
                        category=lab.category,
                        category_status="labelled" if lab.corrected_by is None else "corrected",
                        unknown_reason=None,
                        category_score=lab.score,
                        model_version=lab.model_version,
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
