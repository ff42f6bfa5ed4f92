"""Tumbling windows of category sales and the CategorySales they emit."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import codec
from schemas.sales import category_sales_event_id
from streams.enrich import SalesDelta
from streams.windows import (
    SalesAggregate,
    SalesWindows,
    decode_delta,
    encode_delta,
    merge_deltas,
)


def delta(ts: float, units: int = 2, revenue: float = 5.0, cat: str = "produce") -> SalesDelta:
    return SalesDelta(
        category=cat,
        region="eu-north",
        currency="EUR",
        timestamp=ts,
        units=units,
        revenue=revenue,
    )


def test_delta_round_trips_on_the_wire() -> None:
    d = delta(1_790_000_000.5)
    assert decode_delta(encode_delta(d)) == d


def test_aggregate_adds_orders_units_and_revenue() -> None:
    agg = SalesAggregate()
    agg.add(delta(100.0, units=2, revenue=5.0))
    agg.add(delta(160.0, units=3, revenue=1.25))
    assert (agg.orders, agg.units, agg.revenue, agg.currency) == (2, 5, 6.25, "EUR")
    assert SalesAggregate.from_json(agg.to_json()) == agg
    assert SalesAggregate.from_json({}) == SalesAggregate()


def test_windows_are_tumbling_and_aligned() -> None:
    w = SalesWindows(3600)
    assert w.window_start(7200.0) == 7200.0
    assert w.window_start(10799.9) == 7200.0
    assert w.window_start(10800.0) == 10800.0


def test_drain_emits_one_category_sales_per_changed_window() -> None:
    w = SalesWindows(3600)
    ts = datetime(2026, 12, 24, 10, 15, tzinfo=UTC).timestamp()
    a = SalesAggregate()
    a.add(delta(ts))
    w.changed("produce|eu-north", ts, a)
    a.add(delta(ts + 60))
    w.changed("produce|eu-north", ts + 60, a)  # same window: replaces
    later = ts + 3600
    b = SalesAggregate()
    b.add(delta(later, cat="dairy"))
    w.changed("dairy|eu-north", later, b)
    out = w.drain()
    assert w.pending == 0
    assert w.drain() == []
    by_key = {k: codec.decode_category_sales(v) for k, v in out}
    assert set(by_key) == {"produce|eu-north", "dairy|eu-north"}
    produce = by_key["produce|eu-north"]
    assert produce.window_start == datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
    assert produce.window_end == datetime(2026, 12, 24, 11, 0, tzinfo=UTC)
    assert (produce.orders, produce.units, produce.revenue) == (2, 4, 10.0)
    assert produce.season == "winter"
    assert produce.event_id == category_sales_event_id("produce", "eu-north", produce.window_start)


def test_merge_sums_deltas_of_the_same_window_and_keeps_windows_apart() -> None:
    t = 3600.0 * 500
    merged = merge_deltas(
        [
            delta(t + 10, units=1, revenue=1.0),
            delta(t + 20, units=2, revenue=2.5),
            delta(t + 30, units=1, revenue=1.0, cat="dairy"),
            delta(t + 3600, units=5, revenue=9.0),  # next window
        ],
        3600,
    )
    by = {(d.category, d.timestamp - d.timestamp % 3600): d for d in merged}
    assert len(merged) == 3
    first = by[("produce", t)]
    assert (first.orders, first.units, first.revenue, first.timestamp) == (2, 3, 3.5, t + 20)
    assert by[("dairy", t)].orders == 1
    assert by[("produce", t + 3600)].units == 5
    agg = SalesAggregate()
    for d in merged:
        if d.category == "produce":
            agg.add(d)
    assert (agg.orders, agg.units, agg.revenue) == (3, 8, 12.5)
