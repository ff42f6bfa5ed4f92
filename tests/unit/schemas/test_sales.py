"""Keys, deterministic ids and seasons of category-sales events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas import category_sales_event_id, category_sales_key, decode_category_sales, season_of
from schemas.sales import utc_rfc3339
from tests.unit.schemas.support import EXAMPLES_DIR


@pytest.mark.parametrize(
    ("month", "season"),
    [
        (12, "winter"),
        (1, "winter"),
        (2, "winter"),
        (3, "spring"),
        (5, "spring"),
        (6, "summer"),
        (8, "summer"),
        (9, "autumn"),
        (11, "autumn"),
    ],
)
def test_meteorological_seasons(month: int, season: str) -> None:
    assert season_of(datetime(2026, month, 15, tzinfo=UTC)) == season


def test_season_is_taken_in_utc() -> None:
    # 1 March 00:30 in UTC+1 is still 28 February in UTC.
    assert season_of(datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "winter"
    with pytest.raises(ValueError, match="timezone-aware"):
        season_of(datetime(2026, 3, 1))


def test_event_id_is_deterministic_and_documented() -> None:
    start = datetime(2026, 11, 24, 9, tzinfo=UTC)
    same_instant = start.astimezone(timezone(timedelta(hours=2)))
    first = category_sales_event_id("footwear", "eu-north", start)
    assert first == category_sales_event_id("footwear", "eu-north", same_instant)
    assert first != category_sales_event_id("footwear", "eu-south", start)
    assert first != category_sales_event_id("footwear", "eu-north", start + timedelta(hours=1))
    import hashlib

    expected = hashlib.sha256(b"footwear|eu-north|2026-11-24T09:00:00Z").hexdigest()[:32]
    assert first == expected
    assert utc_rfc3339(start) == "2026-11-24T09:00:00Z"


def test_example_follows_the_rules() -> None:
    sales = decode_category_sales((EXAMPLES_DIR / "CategorySales.v1.json").read_bytes())
    assert sales.event_id == category_sales_event_id(
        sales.category, sales.region, sales.window_start
    )
    assert sales.season == season_of(sales.window_start)
    key = category_sales_key(sales.category, sales.region, sales.window_start)
    assert key == "footwear|eu-north|2026-11-24T09:00:00Z"


def test_key_names_the_window_in_utc_and_the_event_id_hashes_it() -> None:
    start = datetime(2026, 11, 24, 9, tzinfo=UTC)
    key = category_sales_key("footwear", "eu-north", start)
    assert key == "footwear|eu-north|2026-11-24T09:00:00Z"
    # One instant, one key, whatever the offset it is written with.
    same_instant = start.astimezone(timezone(timedelta(hours=-5)))
    assert category_sales_key("footwear", "eu-north", same_instant) == key
    assert category_sales_key("footwear", "eu-north", start.replace(microsecond=500)) == key
    import hashlib

    assert (
        category_sales_event_id("footwear", "eu-north", start)
        == (hashlib.sha256(key.encode()).hexdigest()[:32])
    )


def test_windows_of_one_pair_never_share_a_key() -> None:
    start = datetime(2026, 11, 24, tzinfo=UTC)
    keys = {
        category_sales_key("footwear", "eu-north", start + timedelta(hours=h))
        for h in range(24 * 366)
    }
    assert len(keys) == 24 * 366
    assert category_sales_key("footwear", "eu-north", start) != category_sales_key(
        "footwear", "eu-south", start
    )


def test_key_parts_must_not_contain_the_separator() -> None:
    start = datetime(2026, 11, 24, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="must not contain"):
        category_sales_key("a|b", "eu", start)
    with pytest.raises(ValueError, match="timezone-aware"):
        category_sales_key("footwear", "eu-north", datetime(2026, 11, 24, 9))
