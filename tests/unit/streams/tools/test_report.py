"""Ranking category sales by category, region and season, as `vitrine report` does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from schemas.records import SCHEMA_VERSION, CategorySales
from schemas.sales import category_sales_event_id, season_of
from streams.tools.report import analyse, latest_windows, rank
from streams.tools.report.analysis import RankRow, local_season, movers
from streams.tools.report.charts import render_ranking, render_trend
from streams.tools.report.periods import compare_periods

T0 = datetime(2026, 7, 1, 10, tzinfo=UTC)


def window(
    cat: str,
    region: str,
    start: datetime,
    revenue: float,
    orders: int = 1,
    updated: int = 0,
) -> CategorySales:
    return CategorySales(
        schema_version=SCHEMA_VERSION,
        event_id=category_sales_event_id(cat, region, start),
        occurred_at=start,
        category=cat,
        region=region,
        window_start=start,
        window_end=start + timedelta(hours=1),
        season=season_of(start),
        orders=orders,
        units=orders * 2,
        revenue=revenue,
        currency="EUR",
        updated_at=T0 + timedelta(seconds=updated),
    )


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def totals(rows: list[RankRow]) -> list[tuple[str, float, int, int]]:
    return [(r.name, r.revenue, r.orders, r.units) for r in rows]


def test_a_later_update_of_a_window_replaces_the_earlier_one() -> None:
    early = window("produce", "eu-north", T0, 10.0, updated=1)
    late = window("produce", "eu-north", T0, 25.0, orders=3, updated=2)
    other = window("produce", "eu-north", T0 + timedelta(hours=1), 5.0)
    assert latest_windows([early, late, other]) == [late, other]
    assert latest_windows([late, early]) == [late]


def test_rankings_sum_windows_best_first() -> None:
    winter = datetime(2026, 1, 5, 9, tzinfo=UTC)
    ws = [
        window("produce", "eu-north", T0, 10.0),
        window("produce", "us-east", T0, 5.0),
        window("dairy", "eu-north", T0, 12.0),
        window("produce", "eu-north", winter, 1.0),
    ]
    assert totals(rank(ws, "category")) == [("produce", 16.0, 3, 6), ("dairy", 12.0, 1, 2)]
    assert [r.name for r in rank(ws, "region")] == ["eu-north", "us-east"]
    assert totals(rank(ws, "season")) == [("summer", 27.0, 3, 6), ("winter", 1.0, 1, 2)]
    for by in ("category", "region", "season"):
        assert sum(r.share for r in rank(ws, by)) == pytest.approx(1.0)
    assert [round(r.share, 4) for r in rank(ws, "category")] == [
        round(16 / 28, 4),
        round(12 / 28, 4),
    ]


def test_southern_regions_have_their_seasons_six_months_on() -> None:
    july = window("produce", "sa-east", T0, 7.0)
    january = window("produce", "sa-east", datetime(2026, 1, 5, 9, tzinfo=UTC), 3.0)
    north = window("produce", "eu-north", T0, 2.0)
    south = frozenset({"sa-east", "af-south"})
    assert july.season == "summer"  # the wire carries the northern season
    assert local_season(july, south) == "winter"
    assert local_season(january, south) == "summer"
    assert local_season(north, south) == "summer"
    assert local_season(july, frozenset()) == "summer"
    assert totals(rank([july, january, north], "season", southern=south)) == [
        ("winter", 7.0, 1, 2),
        ("summer", 5.0, 2, 4),
    ]


def two_months() -> list[CategorySales]:
    """November and December 2025 covered from their first to their last day."""
    return [
        window("produce", "eu-north", at("2025-11-01"), 60.0, orders=60),
        window("produce", "eu-north", at("2025-11-20"), 40.0, orders=40),
        window("produce", "eu-north", at("2025-12-10"), 150.0, orders=70),
        window("dairy", "eu-north", at("2025-12-31", 22), 20.0, orders=5),
        window("produce", "us-east", at("2025-11-15"), 80.0, orders=80),
        window("produce", "us-east", at("2025-12-15"), 60.0, orders=60),
        window("dairy", "us-east", at("2025-11-15"), 30.0, orders=10),
        window("dairy", "us-east", at("2025-12-15"), 90.0, orders=30),
    ]


def test_growth_compares_the_last_full_period_with_the_one_before() -> None:
    ws = two_months()
    span = compare_periods(ws, "month")
    assert span is not None
    assert (span.previous, span.current) == ("2025-11", "2025-12")
    rows = {r.name: r for r in rank(ws, "category", span=span)}
    assert (rows["produce"].previous, rows["produce"].current) == (180.0, 210.0)
    assert rows["produce"].growth == pytest.approx(30 / 180)
    assert rows["dairy"].growth == pytest.approx((110 - 30) / 30)
    regions = {r.name: r for r in rank(ws, "region", span=span)}
    assert regions["eu-north"].growth == pytest.approx(170 / 100 - 1)
    assert regions["us-east"].growth == pytest.approx(150 / 110 - 1)
    new = rank([*ws, window("bakery", "eu-north", at("2025-12-02"), 9.0)], "category", span=span)
    assert [r.growth for r in new if r.name == "bakery"] == [None]  # nothing before: no ratio


def test_a_period_is_compared_only_when_whole() -> None:
    ws = two_months()
    # Up to mid-December: December is not over, so November is compared with October,
    # which the data does not cover from its first day: no growth at all.
    cut = [w for w in ws if w.window_start < at("2025-12-16", 0)]
    assert compare_periods(cut, "month") is None
    # From mid-October: October is partial, November and December are whole.
    early = [window("produce", "eu-north", at("2025-10-15"), 1.0), *ws]
    span = compare_periods(early, "month")
    assert span is not None
    assert span.previous == "2025-11"
    assert compare_periods(ws, "quarter") is None  # only Q4, and only two months of it
    weeks = compare_periods(ws, "week")
    assert weeks is not None
    # 2025-12-31 is a Wednesday: the week of the 29th has not ended, the one before has.
    assert (weeks.previous_start.date(), weeks.current_start.date(), weeks.current_end.date()) == (
        date(2025, 12, 15),
        date(2025, 12, 22),
        date(2025, 12, 29),
    )
    assert (weeks.previous, weeks.current) == ("2025-W51", "2025-W52")
    year = [window("produce", "eu-north", at("2025-07-01"), 1.0), *ws]
    quarters = compare_periods(year, "quarter")
    assert quarters is not None
    assert (quarters.previous, quarters.current) == ("2025-Q3", "2025-Q4")


def test_movers_need_volume_and_rank_by_growth() -> None:
    ws = two_months()
    span = compare_periods(ws, "month")
    assert span is not None
    up, down = movers(ws, span, min_orders=50)
    # produce|eu-north: 100 orders before, +50 %; dairy|us-east: +200 % on 10 orders
    # is below the floor; produce|us-east: 80 orders before, -25 %.
    assert [(m.category, m.region, round(m.growth, 4)) for m in up] == [
        ("produce", "eu-north", 0.5)
    ]
    assert [(m.category, m.region, round(m.growth, 4)) for m in down] == [
        ("produce", "us-east", -0.25)
    ]
    up, _ = movers(ws, span, min_orders=10)
    assert [(m.category, m.region) for m in up] == [("dairy", "us-east"), ("produce", "eu-north")]


def test_analysis_without_two_full_periods_has_no_growth_nor_movers() -> None:
    a = analyse([window("produce", "eu-north", T0, 10.0)], southern=frozenset())
    assert a.span is None
    assert a.risers == a.fallers == []
    assert a.rankings["category"][0].growth is None


def test_chart_is_written(tmp_path: Path) -> None:
    out = tmp_path / "sales.png"
    render_ranking(analyse([window("produce", "eu-north", T0, 10.0)], southern=frozenset()), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_trend_says_which_months_the_data_covers_only_in_part(tmp_path: Path) -> None:
    # Data from 15 January to 4 March: January and March are partial, February whole.
    days = [at("2025-01-15") + timedelta(days=d) for d in range(49)]
    windows = [window("produce", "eu-north", d, 10.0) for d in days]
    trend = analyse(windows, southern=frozenset()).trend
    covered = {p.month: (p.days, p.month_days, p.partial) for p in trend}
    assert covered == {
        "2025-01": (17, 31, True),
        "2025-02": (28, 28, False),
        "2025-03": (4, 31, True),
    }
    # The last month holds 4 days' revenue, not a collapse to near zero.
    assert {p.month: p.revenue for p in trend}["2025-03"] == pytest.approx(40.0)
    out = tmp_path / "seasonal_trend.png"
    render_trend(analyse(windows, southern=frozenset()), out)
    assert out.stat().st_size > 0


def test_a_trend_of_whole_months_has_no_partial_one() -> None:
    days = [at("2025-02-01") + timedelta(days=d) for d in range(28)]
    trend = analyse([window("dairy", "eu-west", d, 1.0) for d in days], southern=frozenset()).trend
    assert [(p.month, p.partial) for p in trend] == [("2025-02", False)]
