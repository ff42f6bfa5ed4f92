"""Ranking category sales by category, region and season, as `vitrine report` does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.records import SCHEMA_VERSION, CategorySales
from schemas.sales import category_sales_event_id, season_of
from streams.tools.report import latest_windows, rank, render_chart

T0 = datetime(2026, 7, 1, 10, tzinfo=UTC)


def window(
    cat: str, region: str, start: datetime, revenue: float, orders: int = 1, updated: int = 0
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
    assert rank(ws, "category") == [("produce", 16.0, 3, 6), ("dairy", 12.0, 1, 2)]
    assert [r[0] for r in rank(ws, "region")] == ["eu-north", "us-east"]
    assert rank(ws, "season") == [("summer", 27.0, 3, 6), ("winter", 1.0, 1, 2)]


def test_chart_is_written(tmp_path: Path) -> None:
    out = tmp_path / "sales.png"
    render_chart([window("produce", "eu-north", T0, 10.0)], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
