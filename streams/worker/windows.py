"""Windowed category-sales aggregation: tumbling windows per ``category|region``.

The order agent forwards each order's :class:`~streams.worker.enrich.SalesDelta` to an
internal topic keyed by ``category|region``, so every window of one key is
owned by one partition, hence one worker, however many workers run. The sales
agent folds the deltas into a Faust tumbling-window table (changelog-backed, so
it survives a worker restart) relative to the order's ``created_at``, and a
timer emits the changed windows to ``category-sales`` at most once per
interval: one CategorySales per window per key, each update replacing the last
(same key, same deterministic ``event_id``).

Counting is at-least-once: an order re-delivered after a crash is counted
again. Exactly-once would need Faust's ``processing_guarantee="exactly_once"``
(Kafka transactions); see the README.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas import codec
from schemas.records import SCHEMA_VERSION, CategorySales
from schemas.sales import category_sales_event_id, category_sales_key, season_of
from streams.worker.enrich import SalesDelta

__all__ = ["SalesAggregate", "SalesWindows", "decode_delta", "encode_delta", "merge_deltas"]

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

    def drain(self) -> list[tuple[str, bytes]]:
        """Encoded CategorySales for every changed window, and forget them."""
        dirty, self._dirty = self._dirty, {}
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
            out.append((category_sales_key(category, region), codec.encode(value)))
        return out

    @property
    def pending(self) -> int:
        return len(self._dirty)
