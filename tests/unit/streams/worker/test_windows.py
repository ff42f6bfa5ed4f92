"""Tumbling windows of category sales and the CategorySales they emit."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from schemas import codec
from schemas.sales import category_sales_event_id
from streams.worker.windows import (
    EventTimeWindow,
    SalesAggregate,
    SalesDelta,
    SalesPart,
    SalesWindows,
    decode_delta,
    deltas_partition,
    encode_delta,
    merge_deltas,
)


def delta(ts: float, units: int = 2, revenue: float = 5.0, cat: str = "produce") -> SalesDelta:
    return SalesDelta(
        category=cat,
        region="eu-north",
        currency="EUR",
        timestamp_s=ts,
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
    assert set(by_key) == {
        "produce|eu-north|2026-12-24T10:00:00Z",
        "dairy|eu-north|2026-12-24T11:00:00Z",
    }
    produce = by_key["produce|eu-north|2026-12-24T10:00:00Z"]
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
    by = {(d.category, d.timestamp_s - d.timestamp_s % 3600): d for d in merged}
    assert len(merged) == 3
    first = by[("produce", t)]
    assert (first.orders, first.units, first.revenue, first.timestamp_s) == (2, 3, 3.5, t + 20)
    assert by[("dairy", t)].orders == 1
    assert by[("produce", t + 3600)].units == 5
    agg = SalesAggregate()
    for d in merged:
        if d.category == "produce":
            agg.add(d)
    assert (agg.orders, agg.units, agg.revenue) == (3, 8, 12.5)


def part_delta(ts: float, *parts: tuple[int, int, int, float]) -> SalesDelta:
    """A delta made of orders read at (partition, offset), each with (units, revenue)."""
    return SalesDelta(
        category="produce", region="eu-north", currency="EUR", timestamp_s=ts,
        units=sum(p[2] for p in parts), revenue=sum(p[3] for p in parts), orders=len(parts),
        parts=tuple(SalesPart(*p) for p in parts),
    )  # fmt: skip


def test_a_redelivered_batch_is_counted_once_whatever_its_boundaries() -> None:
    agg = SalesAggregate()
    # Two batches from partitions 0 and 1 ...
    assert agg.add(part_delta(10.0, (0, 0, 1, 1.0), (0, 1, 2, 2.0), (1, 0, 1, 4.0))) == 0
    assert agg.add(part_delta(20.0, (0, 2, 1, 8.0))) == 0
    # ... then partition 0 again from offset 1 (a kill before its commit), cut
    # differently and running past what was counted.
    assert agg.add(part_delta(30.0, (0, 1, 2, 2.0), (0, 2, 1, 8.0), (0, 3, 5, 16.0))) == 2
    assert (agg.orders, agg.units, agg.revenue) == (5, 10, 31.0)
    assert agg.counted_to == {"0": 3, "1": 0}
    # The watermarks survive the table's changelog.
    assert SalesAggregate.from_json(agg.to_json()) == agg


def test_merged_deltas_keep_every_order_part() -> None:
    merged = merge_deltas(
        [part_delta(10.0, (0, 5, 1, 1.0)), part_delta(20.0, (1, 7, 2, 3.0))], 3600
    )
    assert len(merged) == 1
    assert [(p.partition, p.offset) for p in merged[0].parts] == [(0, 5), (1, 7)]
    assert decode_delta(encode_delta(merged[0])) == merged[0]


def test_deltas_and_table_values_from_before_parts_still_count() -> None:
    old_wire = b'{"category":"produce","region":"eu-north","currency":"EUR",' \
               b'"timestamp":100.0,"units":3,"revenue":4.5,"orders":2}'  # fmt: skip
    old = decode_delta(old_wire)
    assert old.parts == ()
    assert old.timestamp_s == 100.0
    agg = SalesAggregate.from_json(
        {"orders": 1, "units": 1, "revenue": 1.0, "currency": "EUR", "last_order_at": 50.0}
    )
    assert agg.add(old) == 0
    assert (agg.orders, agg.units, agg.revenue, agg.last_order_at_s) == (3, 4, 5.5, 100.0)


def test_event_time_window_expires_by_order_time_not_the_wall_clock() -> None:
    # A year ago: Faust's wall-clock staleness would expire this window at once.
    now = datetime(2026, 12, 5, 12, tzinfo=UTC).timestamp()
    year_ago = now - 365 * 86400
    w = EventTimeWindow(3600, 7 * 86400, clock=lambda: now)
    assert not w.stale(w.current(year_ago)[1], now)  # nothing seen yet: nothing expires
    w.observe(0, year_ago)
    assert not w.late(year_ago)
    assert not w.stale(w.current(year_ago)[1], now)
    # Eight days of order time later, that window has expired; the day before has not.
    w.observe(0, year_ago + 8 * 86400)
    assert w.late(year_ago)
    assert w.stale(w.current(year_ago)[1], now)
    assert not w.late(year_ago + 8 * 86400 - 86400)


def test_event_time_window_late_boundary_matches_faust_cleanup() -> None:
    w = EventTimeWindow(3600, 7200, clock=lambda: 1e12)
    w.observe(0, 36_000.0)  # 10:00; windows ending at or before 08:00's start expire
    assert w.late(3600 * 7 + 10)  # the 07:00 window ends 07:59:59.9
    assert not w.late(3600 * 8 + 10)  # the 08:00 window is kept


def test_a_future_order_time_cannot_expire_the_present() -> None:
    now = 1_800_000_000.0
    w = EventTimeWindow(3600, 86400, clock=lambda: now)
    w.observe(0, now + 10 * 365 * 86400)  # a bad clock upstream
    assert w.watermark_s == now + 3600
    assert not w.late(now - 3600)


def test_the_watermark_is_the_slowest_partitions_order_time() -> None:
    # A back-fill: partition 1 is read a month ahead of partition 0.
    day = 86400
    w = EventTimeWindow(3600, 7 * day, clock=lambda: 1e12)
    w.observe(0, 100 * day)
    w.observe(1, 130 * day)
    assert w.watermark_s == 100 * day
    assert not w.late(100 * day - 3600), "on time for its own partition"
    w.observe(0, 131 * day)
    assert w.watermark_s == 130 * day
    assert w.late(100 * day)


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    day = 86400
    w = EventTimeWindow(3600, 7 * day, clock=lambda: 1e12, idle_s=0.05)
    w.observe(0, 10 * day)
    time.sleep(0.1)  # partition 0 falls silent
    w.observe(1, 40 * day)
    assert w.watermark_s == 40 * day
    w.observe(0, 11 * day)  # it speaks again: late, and the watermark does not move back
    assert w.watermark_s == 40 * day
    assert w.late(11 * day)


def test_windows_of_one_category_and_region_have_keys_of_their_own() -> None:
    """The topic is compacted: a key per window, or the cleaner keeps only the newest."""
    w = SalesWindows(3600)
    ts = datetime(2026, 12, 24, 10, 15, tzinfo=UTC).timestamp()
    for hour in range(3):
        agg = SalesAggregate()
        agg.add(delta(ts + hour * 3600))
        w.changed("produce|eu-north", ts + hour * 3600, agg)
    keys = [k for k, _ in w.drain()]
    assert sorted(keys) == [
        "produce|eu-north|2026-12-24T10:00:00Z",
        "produce|eu-north|2026-12-24T11:00:00Z",
        "produce|eu-north|2026-12-24T12:00:00Z",
    ]
    # A later update of a window has the key of the first.
    agg = SalesAggregate()
    agg.add(delta(ts + 600))
    w.changed("produce|eu-north", ts + 600, agg)
    assert [k for k, _ in w.drain()] == ["produce|eu-north|2026-12-24T10:00:00Z"]


def test_windows_of_keys_not_owned_stay_pending_until_dropped() -> None:
    """During a rebalance nothing is emitted; after it, another owner's windows are let go."""
    w = SalesWindows(3600)
    ts = datetime(2026, 12, 24, 10, 15, tzinfo=UTC).timestamp()
    for cat in ("produce", "dairy"):
        agg = SalesAggregate()
        agg.add(delta(ts, cat=cat))
        w.changed(f"{cat}|eu-north", ts, agg)
    assert w.drain(lambda key: False) == []
    assert w.pending == 2
    assert [k for k, _ in w.drain(lambda key: key.startswith("dairy"))] == [
        "dairy|eu-north|2026-12-24T10:00:00Z"
    ]
    assert w.keep(lambda key: key.startswith("dairy")) == 1
    assert w.pending == 0


def test_deltas_partition_is_where_the_producer_puts_the_key() -> None:
    partitions = list(range(6))
    for cat in ("produce", "dairy", "beverages", "pantry", "frozen", "unknown"):
        for region in ("eu-north", "eu-south", "us-east"):
            key = f"{cat}|{region}"
            want = DefaultPartitioner()(key.encode(), partitions, partitions)
            assert deltas_partition(key, len(partitions)) == want
