"""The recommendations' update and query logic, on the in-memory store (no network)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from schemas.records import SCHEMA_VERSION, EnrichedItem, EnrichedOrder
from streams.settings import OrderSettings, RecommendSettings, RedisSettings, Settings
from streams.tools.recommend_eval import MemoryStore, evaluate_recommendations
from streams.worker.recommend import (
    Recommendations,
    RecommendConfig,
    increments,
    merge_increments,
    recommend,
)

CFG = RecommendConfig(prefix="t", southern_regions=frozenset({"sa-east"}), max_members=10)
JULY = datetime(2025, 7, 1, 12, tzinfo=UTC)


def line(product_id: str, quantity: int = 1, category: str | None = "produce") -> EnrichedItem:
    return EnrichedItem(
        product_id=product_id,
        quantity=quantity,
        unit_price=1.0,
        line_total=float(quantity),
        category=category or "unknown",
        category_status="labelled" if category else "unknown",
        unknown_reason=None if category else "not_labelled",
    )


def order(
    *items: EnrichedItem, at: datetime = JULY, region: str = "eu-north", n: int = 0
) -> EnrichedOrder:
    return EnrichedOrder(
        schema_version=SCHEMA_VERSION,
        event_id=f"e-{n}-{at.isoformat()}",
        occurred_at=at,
        order_id=f"o-{n}",
        region=region,
        currency="EUR",
        created_at=at,
        items=items,
        order_total=sum(it.line_total for it in items),
        enriched_at=at,
    )


def store_of(*orders: EnrichedOrder, categories: dict[str, str] | None = None) -> MemoryStore:
    store = MemoryStore(categories or {}, CFG)
    store.apply(merge_increments(orders, CFG))
    return store


def ask(store: MemoryStore, product_id: str, **kw: object) -> Recommendations:
    args = {"region": "eu-north", "k": 5, "at": JULY} | kw
    return asyncio.run(recommend(store, CFG, product_id, **args))  # type: ignore[arg-type]


def test_an_order_adds_each_pair_both_ways_and_units_to_popularity() -> None:
    w = CFG.weight(JULY)
    got = list(increments(order(line("a", 2), line("b"), line("c", 5, None)), CFG))
    pairs = [(k, m) for k, m, _ in got if k.startswith("t:rec:")]
    assert sorted(pairs) == [
        ("t:rec:a", "b"), ("t:rec:a", "c"), ("t:rec:b", "a"),
        ("t:rec:b", "c"), ("t:rec:c", "a"), ("t:rec:c", "b"),
    ]  # fmt: skip
    assert all(inc == pytest.approx(w) for k, _, inc in got if k.startswith("t:rec:"))
    # c's category is unknown: no popularity for it; a counts its units.
    popular = {(k, m): inc for k, m, inc in got if not k.startswith("t:rec:")}
    assert popular == {
        ("t:pop:eu-north:summer:produce", "a"): pytest.approx(2 * w),
        ("t:pop:eu-north:summer:produce", "b"): pytest.approx(w),
        ("t:popall:produce", "a"): pytest.approx(2 * w),
        ("t:popall:produce", "b"): pytest.approx(w),
    }


def test_the_season_is_local_to_the_region() -> None:
    keys = {k for k, _, _ in increments(order(line("a"), region="sa-east"), CFG)}
    assert keys == {"t:pop:sa-east:winter:produce", "t:popall:produce"}


def test_a_product_twice_in_an_order_is_one_product_and_its_units_add() -> None:
    got = list(increments(order(line("a", 2), line("a", 3)), CFG))
    assert not [k for k, _, _ in got if k.startswith("t:rec:")]
    assert {k: inc for k, _, inc in got} == {
        "t:pop:eu-north:summer:produce": pytest.approx(5 * CFG.weight(JULY)),
        "t:popall:produce": pytest.approx(5 * CFG.weight(JULY)),
    }


def test_a_huge_basket_adds_popularity_but_no_pairs() -> None:
    cfg = RecommendConfig(prefix="t", max_basket_lines=3)
    got = list(increments(order(*(line(f"p{i}") for i in range(4))), cfg))
    assert not [k for k, _, _ in got if k.startswith("t:rec:")]
    assert len(got) == 8


def test_weights_halve_every_half_life_of_event_time() -> None:
    later = JULY + timedelta(days=CFG.half_life_days)
    assert CFG.weight(later) / CFG.weight(JULY) == pytest.approx(2.0)


def test_recent_co_purchases_outrank_more_numerous_old_ones() -> None:
    old = JULY - timedelta(days=4 * CFG.half_life_days)
    orders = [order(line("a"), line("b"), at=old, n=i) for i in range(3)]
    orders.append(order(line("a"), line("c"), at=JULY, n=9))
    recs = ask(store_of(*orders), "a", at=JULY)
    # Scores read as co-purchases as of `at`: 1 recent, 3 x 2^-4 old.
    assert [(r.product_id, round(r.score, 4)) for r in recs.items[:2]] == [
        ("c", 1.0),
        ("b", round(3 / 16, 4)),
    ]
    # Event time, not arrival order: the same orders in reverse give the same store.
    forward, backward = store_of(*orders).sets, store_of(*reversed(orders)).sets
    assert forward.keys() == backward.keys()
    for key, members in forward.items():
        assert backward[key] == pytest.approx(members), key


def test_the_query_leaves_the_product_out_and_says_the_source() -> None:
    store = store_of(
        order(line("lemon"), line("lime"), n=1),
        order(line("lemon"), line("lime"), line("banana", 3), n=2),
        order(line("banana", 9), line("pear", 2), n=3),
        categories={"lemon": "produce"},
    )
    recs = ask(store, "lemon", k=3)
    assert [(r.product_id, r.source) for r in recs.items] == [
        ("lime", "bought_together"),
        ("banana", "bought_together"),
        # Topped up with the most popular produce in the region and season.
        ("pear", "popular_in_category"),
    ]
    assert recs.category == "produce"
    assert recs.season == "summer"


def test_a_new_product_gets_its_categorys_popular_products_season_first() -> None:
    winter = JULY - timedelta(days=150)  # February: northern winter
    store = store_of(
        order(line("kale", 50), at=winter, n=1),
        order(line("cherry", 2), n=2),
        order(line("melon", 1), n=3),
        order(line("milk", 90, "dairy"), n=4),
        categories={"new": "produce"},
    )
    recs = ask(store, "new", k=5)
    # This season's produce first, then produce of any season; never dairy.
    assert [(r.product_id, r.source) for r in recs.items] == [
        ("cherry", "popular_in_category"),
        ("melon", "popular_in_category"),
        ("kale", "popular_in_category"),
    ]
    # A region with no sales: produce sold anywhere, any time (kale's 50 units
    # five half-lives ago weigh 1.6 units today, more than the melon's one).
    elsewhere = ask(store, "new", k=5, region="ap-southeast")
    assert [r.product_id for r in elsewhere.items] == ["cherry", "kale", "melon"]


def test_a_product_with_no_label_and_no_orders_gets_nothing() -> None:
    recs = ask(store_of(order(line("a"), line("b"))), "ghost")
    assert recs.items == []
    assert recs.category is None
    assert recs.to_json()["items"] == []


def test_the_store_keeps_the_best_max_members_per_key() -> None:
    orders = [order(line("hub"), *(line(f"p{j}") for j in range(i + 1)), n=i) for i in range(15)]
    store = store_of(*orders)
    assert len(store.sets["t:rec:hub"]) == CFG.max_members
    # p0 is in every order, p14 in one: the kept ones are the most bought with hub.
    assert set(store.sets["t:rec:hub"]) == {f"p{j}" for j in range(10)}


def test_config_from_the_settings() -> None:
    s = Settings(
        redis=RedisSettings(key_prefix="shop"),
        recommend=RecommendSettings(half_life_days=14, max_members=50),
        orders=OrderSettings(southern_hemisphere_regions="x-south, y-south"),
    )
    cfg = RecommendConfig.from_settings(s)
    assert cfg.prefix == "shop"
    assert cfg.half_life_days == 14
    assert cfg.max_members == 50
    assert cfg.southern_regions == frozenset({"x-south", "y-south"})
    assert cfg.together_key("p1") == "shop:rec:p1"


def test_the_model_beats_popularity_on_a_shortened_simulation() -> None:
    ev = evaluate_recommendations(days=120, seed=7)
    assert ev.queries > 1000
    assert ev.planted_first == ev.planted_pairs == 6
    assert ev.model_hit_rate > ev.popularity_hit_rate
    assert ev.model_ndcg > 1.1 * ev.popularity_ndcg
    # And it stays below what the generator's own odds reach.
    assert ev.model_ndcg <= ev.ceiling_ndcg + 0.01
