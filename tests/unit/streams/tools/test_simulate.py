"""The order generator does what its docstring states: seasons, weekdays, promotions, pairs."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from schemas import codec
from streams.tools.simulate.generator import (
    PLANTED_PAIRS,
    REGIONS,
    Simulation,
    catalogue,
    demand_factor,
    simulate,
)

START = datetime(2025, 12, 1, tzinfo=UTC)
CITRUS = {"Lemon", "Lime", "Orange", "Red-Grapefruit", "Satsumas"}


@pytest.fixture(scope="module")
def year() -> Simulation:
    return simulate(catalogue("t"), start=START, days=365, orders_per_day=60, seed=3, tag="t")


def test_same_seed_same_orders_byte_for_byte() -> None:
    a = simulate(catalogue("t"), start=START, days=20, seed=5, tag="t")
    b = simulate(catalogue("t"), start=START, days=20, seed=5, tag="t")
    c = simulate(catalogue("t"), start=START, days=20, seed=6, tag="t")
    assert [codec.encode(o) for o in a.orders] == [codec.encode(o) for o in b.orders]
    assert [codec.encode(o) for o in a.orders] != [codec.encode(o) for o in c.orders]


def test_orders_are_valid_in_time_order_and_in_the_span(year: Simulation) -> None:
    assert len(year.orders) > 15_000
    times = [o.created_at for o in year.orders]
    assert times == sorted(times)
    assert times[0] >= START
    assert (times[-1] - START).days < 365
    for o in year.orders[:500]:
        assert codec.decode_order(codec.encode(o)) == o
    assert {o.region for o in year.orders} == {r.name for r in REGIONS}
    assert len({o.order_id for o in year.orders}) == len(year.orders)


def _citrus_units(sim: Simulation, hemisphere: str) -> dict[int, int]:
    kind = {p.product_id: p.kind for p in sim.products}
    hemi = {r.name: r.hemisphere for r in REGIONS}
    by_month: dict[int, int] = defaultdict(int)
    for o in sim.orders:
        if hemi[o.region] == hemisphere:
            for it in o.items:
                if kind[it.product_id] in CITRUS:
                    by_month[o.created_at.month] += it.quantity
    return by_month


def test_citrus_sells_in_the_local_winter(year: Simulation) -> None:
    north, south = _citrus_units(year, "north"), _citrus_units(year, "south")
    assert north[1] > 1.5 * north[7]
    assert south[7] > 1.5 * south[1]


def test_demand_factor_peaks_where_stated() -> None:
    jan, jul = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)
    assert demand_factor("Orange", jan, "north") > 1.6 > demand_factor("Orange", jul, "north")
    assert demand_factor("Orange", jul, "south") > 1.6
    assert demand_factor("Zucchini", jul, "north") > demand_factor("Zucchini", jan, "north")
    assert demand_factor("no-such-kind", jan, "north") == 1.0


def test_fridays_and_saturdays_are_busiest_sundays_quietest(year: Simulation) -> None:
    per_weekday = Counter(o.created_at.weekday() for o in year.orders)
    assert per_weekday.most_common(1)[0][0] == 5
    assert min(per_weekday, key=per_weekday.__getitem__) == 6


def test_promotions_cut_the_price_and_lift_demand(year: Simulation) -> None:
    kind = {p.product_id: p.kind for p in year.products}
    base = {p.product_id: p.base_price for p in year.products}
    promo = year.promotions[0]
    on = off = 0
    for o in year.orders:
        if o.region != promo.region:
            continue
        for it in o.items:
            if kind[it.product_id] != promo.kind:
                continue
            if promo.active(o.region, promo.kind, o.created_at):
                assert it.unit_price == round(base[it.product_id] * 0.8, 2)
                on += 1
            else:
                assert it.unit_price == base[it.product_id]
                off += 1
    # A week in ~51 off: with 2.5x demand the week holds well over its 1/52 share.
    assert on / (on + off) > 1.5 / 52


def test_planted_pairs_are_bought_together(year: Simulation) -> None:
    cls = {p.product_id: p.class_name for p in year.products}
    baskets = [{cls[it.product_id] for it in o.items} for o in year.orders]
    for first, second in PLANTED_PAIRS:
        with_first = [b for b in baskets if first in b]
        without = [b for b in baskets if first not in b]
        together = sum(second in b for b in with_first) / len(with_first)
        apart = sum(second in b for b in without) / len(without)
        assert together > 0.55, (first, second, together)
        assert together > 3 * apart, (first, second, together, apart)


def test_ground_truth_sums_every_line_once(year: Simulation) -> None:
    total = round(sum(it.quantity * it.unit_price for o in year.orders for it in o.items), 2)
    for by in ("category", "region", "season"):
        assert sum(year.revenue_by(by).values()) == pytest.approx(total, abs=0.05)  # type: ignore[arg-type]
    assert set(year.ranking("category")) == {"produce", "dairy", "beverages"}
    assert year.ranking("season")[0] in {"winter", "spring", "summer", "autumn"}
