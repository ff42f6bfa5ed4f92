"""`vitrine report` reads every window on category-sales, before and after compaction."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from schemas import codec
from schemas.records import SCHEMA_VERSION, CategorySales
from schemas.sales import category_sales_event_id, category_sales_key, season_of
from streams.tools.report.history import windows_from_records

T0 = datetime(2026, 7, 1, 10, tzinfo=UTC)


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def window(
    start: datetime, revenue: float, *, region: str = "eu-north", updated_s: int = 0
) -> CategorySales:
    return CategorySales(
        schema_version=SCHEMA_VERSION,
        event_id=category_sales_event_id("produce", region, start),
        occurred_at=start,
        category="produce",
        region=region,
        window_start=start,
        window_end=start + timedelta(hours=1),
        season=season_of(start),
        orders=1,
        units=1,
        revenue=revenue,
        currency="EUR",
        updated_at=T0 + timedelta(seconds=updated_s),
    )


def new_key(w: CategorySales) -> bytes:
    return category_sales_key(w.category, w.region, w.window_start).encode()


def old_key(w: CategorySales) -> bytes:
    return f"{w.category}|{w.region}".encode()


def record(partition: int, offset: int, key: bytes, w: CategorySales | None) -> Record:
    return Record(partition, offset, key, None if w is None else codec.encode(w))


def revenue(windows: list[CategorySales]) -> dict[datetime, float]:
    return {w.window_start: w.revenue for w in windows}


def test_the_last_update_of_a_window_by_offset_wins_whatever_the_clocks_say() -> None:
    first = window(T0, 10.0, updated_s=50)  # written by a worker whose clock ran ahead
    second = window(T0, 25.0, updated_s=10)
    got = windows_from_records(
        [record(0, 8, new_key(second), second), record(0, 3, new_key(first), first)]
    )
    assert got == [second]


def test_every_window_of_the_old_key_form_is_read() -> None:
    """Records of earlier workers, keyed category|region: one key, many windows."""
    ws = [window(T0 + timedelta(hours=h), 10.0 + h, updated_s=h) for h in range(3)]
    update = window(T0, 99.0, updated_s=9)
    records = [record(1, i, old_key(w), w) for i, w in enumerate([*ws, update])]
    got = windows_from_records(records)
    assert revenue(got) == {
        T0: 99.0,
        T0 + timedelta(hours=1): 11.0,
        T0 + timedelta(hours=2): 12.0,
    }


def test_a_window_updated_under_both_key_forms_counts_once_with_its_latest_update() -> None:
    """The window open while the workers were upgraded: old key on one partition, new on another."""
    before = window(T0, 10.0, updated_s=1)
    after = window(T0, 30.0, updated_s=2)
    other = window(T0 + timedelta(hours=1), 5.0, updated_s=3)
    records = [
        record(1, 0, new_key(after), after),
        record(1, 1, new_key(other), other),
        record(0, 7, old_key(before), before),
    ]
    assert revenue(windows_from_records(records)) == {T0: 30.0, T0 + timedelta(hours=1): 5.0}


def test_a_tombstone_deletes_what_its_key_held() -> None:
    kept = window(T0, 10.0)
    gone = window(T0 + timedelta(hours=1), 20.0)
    records = [
        record(0, 0, new_key(kept), kept),
        record(0, 1, new_key(gone), gone),
        record(0, 2, new_key(gone), None),
    ]
    assert windows_from_records(records) == [kept]
    # Written again after the tombstone: there again.
    assert windows_from_records([*records, record(0, 3, new_key(gone), gone)]) == [kept, gone]


def compacted(records: list[Record]) -> list[Record]:
    """What Kafka's log cleaner leaves: the last record of every key of a partition."""
    last: dict[tuple[int, bytes | None], Record] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        last[(r.partition, r.key)] = r
    return list(last.values())


# Updates as (window hour, region, revenue, clock skew of the writing worker).
updates = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["eu-north", "us-east"]),
        st.floats(0, 1000, allow_nan=False).map(lambda x: round(x, 2)),
        st.integers(-30, 30),
    ),
    max_size=40,
)


@given(updates, st.integers(1, 3))
def test_the_windows_read_are_the_same_before_and_after_compaction(
    writes: list[tuple[int, str, float, int]], partitions: int
) -> None:
    offsets = [0] * partitions
    records = []
    for i, (hour, region, amount, skew_s) in enumerate(writes):
        w = window(T0 + timedelta(hours=hour), amount, region=region, updated_s=i + skew_s)
        key = new_key(w)
        p = zlib.crc32(key) % partitions  # any fixed key -> partition map
        records.append(record(p, offsets[p], key, w))
        offsets[p] += 1
    before = windows_from_records(records)
    after = windows_from_records(compacted(records))
    assert sorted(before, key=lambda w: w.event_id) == sorted(after, key=lambda w: w.event_id)
    assert len(before) == len({(h, r) for h, r, _, _ in writes})
