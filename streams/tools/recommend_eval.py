"""``vitrine evaluate-recs``: the recommendations scored offline on a simulated year.

The orders of :func:`streams.tools.simulate.generator.simulate` are split by time:
the worker's own update and query (:mod:`streams.worker.recommend`, on an
in-memory :class:`MemoryStore`) learn from the first ten twelfths, and each
product of every later basket of two or more is a query whose targets are the
rest of its basket. The model is scored (hit rate@k, NDCG@k) beside a regional
popularity baseline, a seasonal one and the generator's own odds as a ceiling
(:func:`_generator_odds`). Method and results: docs/RECOMMENDATIONS.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from schemas.records import EnrichedItem, EnrichedOrder, OrderEvent
from streams.settings import get_settings
from streams.tools.simulate.generator import (
    PLANTED_PAIRS,
    PROMO_LIFT,
    REGIONS,
    Simulation,
    catalogue,
    demand_factor,
    simulate,
)
from streams.worker.enrich import enriched_order
from streams.worker.recommend import (
    RecommendConfig,
    Scored,
    merge_increments,
    recommend,
)

__all__ = [
    "START",
    "TRAIN_FRACTION",
    "MemoryStore",
    "RecsEvaluation",
    "Scores",
    "enrich",
    "evaluate_recommendations",
    "run_evaluate_recs",
]

logger = logging.getLogger(__name__)

#: First simulated day: fixed, so that the same arguments give the same numbers.
START = datetime(2025, 1, 1, tzinfo=UTC)
TRAIN_FRACTION = 10 / 12


class MemoryStore:
    """The recommendation sorted sets in a dict, written and trimmed as Redis is."""

    def __init__(self, categories: Mapping[str, str], cfg: RecommendConfig) -> None:
        self.sets: dict[str, dict[str, float]] = {}
        self.categories = dict(categories)
        self.cfg = cfg

    def apply(self, merged: Mapping[str, Mapping[str, float]]) -> None:
        """ZINCRBY every (key, member), then keep each touched key's best ``max_members``."""
        for key, members in merged.items():
            zset = self.sets.setdefault(key, {})
            for member, amount in members.items():
                zset[member] = zset.get(member, 0.0) + amount
            if len(zset) > self.cfg.max_members:
                # Ties go as ZREMRANGEBYRANK drops them: the lexically smallest first.
                kept = sorted(zset.items(), key=lambda ms: (ms[1], ms[0]), reverse=True)
                self.sets[key] = dict(kept[: self.cfg.max_members])

    def top(self, key: str, n: int) -> list[Scored]:
        """ZREVRANGE key 0 n-1 WITHSCORES (ties by member, descending, as Redis)."""
        zset = self.sets.get(key, {})
        return sorted(zset.items(), key=lambda ms: (ms[1], ms[0]), reverse=True)[:n]

    async def tops(
        self, keys: Sequence[str], n: int, category_of: str | None = None
    ) -> tuple[list[list[Scored]], str | None]:
        """What :class:`~streams.worker.recommend.Recommender` reads from Redis."""
        category = self.categories.get(category_of) if category_of is not None else None
        return [self.top(key, n) for key in keys], category


def enrich(order: OrderEvent, categories: Mapping[str, str]) -> EnrichedOrder:
    """``order`` as the worker would emit it if every product were labelled right."""
    items = tuple(
        EnrichedItem(
            product_id=it.product_id,
            quantity=it.quantity,
            unit_price=it.unit_price,
            line_total=round(it.quantity * it.unit_price, 4),
            category=categories[it.product_id],
            category_status="labelled",
        )
        for it in order.items
    )
    return enriched_order(order, items, order.occurred_at)


@dataclass
class Scores:
    """Hit rate@k and NDCG@k summed over queries; :meth:`means` divides."""

    hits: float = 0.0
    ndcg: float = 0.0

    def add(self, ranked: Sequence[str], targets: set[str], k: int) -> None:
        """Score one query's ranking against its targets."""
        gains = [1 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in targets]
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(targets), k)))
        self.hits += bool(gains)
        self.ndcg += sum(gains) / ideal

    def means(self, queries: int) -> tuple[float, float]:
        """(hit rate, NDCG) averaged over ``queries``."""
        return self.hits / max(1, queries), self.ndcg / max(1, queries)


@dataclass(frozen=True)
class RecsEvaluation:
    """The numbers ``vitrine evaluate-recs`` prints."""

    days: int
    seed: int
    k: int
    half_life_days: float
    train_orders: int
    test_orders: int
    queries: int
    split_at: str
    model_hit_rate: float
    model_ndcg: float
    #: The baseline the model is measured against: popularity in the query's region.
    popularity_hit_rate: float
    popularity_ndcg: float
    #: A stronger baseline: popularity in the query's region in its current local season.
    seasonal_hit_rate: float
    seasonal_ndcg: float
    #: The ceiling: ranked by the generator's own odds (see :func:`_generator_odds`).
    ceiling_hit_rate: float
    ceiling_ndcg: float
    #: Planted pairs whose partner is the model's first answer for the first product.
    planted_first: int
    planted_pairs: int
    seconds: float

    @property
    def hit_rate_ratio(self) -> float:
        """Model hit rate over the popularity baseline's."""
        return self.model_hit_rate / self.popularity_hit_rate

    @property
    def ndcg_ratio(self) -> float:
        """Model NDCG over the popularity baseline's."""
        return self.model_ndcg / self.popularity_ndcg

    def to_json(self) -> dict[str, Any]:
        """Every field and both ratios."""
        return asdict(self) | {"hit_rate_ratio": self.hit_rate_ratio, "ndcg_ratio": self.ndcg_ratio}


def _train(
    sim: Simulation, split: datetime, cfg: RecommendConfig, batch_size: int
) -> tuple[MemoryStore, int]:
    """The model after every order before ``split``, fed in worker-sized batches."""
    categories = sim.category_of()
    store = MemoryStore(categories, cfg)
    train = [enrich(o, categories) for o in sim.orders if o.created_at < split]
    for i in range(0, len(train), batch_size):
        store.apply(merge_increments(train[i : i + batch_size], cfg))
    return store, len(train)


def _popularity(store: MemoryStore, cfg: RecommendConfig, region: str, season: str) -> list[str]:
    """Products by decayed units sold in ``region`` in ``season`` (``*``: any), every category."""
    units: dict[str, float] = {}
    head = f"{cfg.prefix}:pop:{region}:"
    for key, zset in store.sets.items():
        if key.startswith(head) and season in ("*", key[len(head) :].split(":", 1)[0]):
            for member, score in zset.items():
                units[member] = units.get(member, 0.0) + score
    return sorted(units, key=lambda p: (-units[p], p))


def _generator_odds(sim: Simulation) -> Callable[[OrderEvent, str], list[str]]:
    """A ranking no model can beat by much: the simulation's own demand weights.

    The query's planted partners first (either way round), then every product by
    its popularity x seasonal demand x promotion lift on that day in that region:
    what :func:`~streams.tools.simulate.generator.simulate` drew the basket from.
    """
    ids = {p.class_name: p.product_id for p in sim.products}
    partners: dict[str, list[str]] = {}
    for first, second in PLANTED_PAIRS:
        partners.setdefault(ids[first], []).append(ids[second])
        partners.setdefault(ids[second], []).append(ids[first])
    hemisphere = {r.name: r.hemisphere for r in REGIONS}
    ranked_on: dict[tuple[str, datetime], list[str]] = {}

    def rank(order: OrderEvent, query: str) -> list[str]:
        day = order.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        if (order.region, day) not in ranked_on:
            weight = {
                p.product_id: p.popularity
                * demand_factor(p.kind, day, hemisphere.get(order.region, "north"))
                * (PROMO_LIFT if any(pr.active(order.region, p.kind, day) for pr in sim.promotions)
                   else 1.0)
                for p in sim.products
            }  # fmt: skip
            ranked_on[order.region, day] = sorted(weight, key=lambda p: (-weight[p], p))
        first = partners.get(query, [])
        return first + [p for p in ranked_on[order.region, day] if p != query and p not in first]

    return rank


async def _score(
    sim: Simulation,
    store: MemoryStore,
    cfg: RecommendConfig,
    test: Sequence[OrderEvent],
    k: int,
) -> tuple[dict[str, Scores], int]:
    """Each ranker's scores over every product of every test basket, and the query count."""
    regional: dict[str, list[str]] = {}
    seasonal: dict[tuple[str, str], list[str]] = {}
    odds = _generator_odds(sim)
    scores = {name: Scores() for name in ("model", "popularity", "seasonal", "ceiling")}
    queries = 0
    for order in test:
        basket = list(dict.fromkeys(it.product_id for it in order.items))
        if len(basket) < 2:
            continue
        region, season = order.region, cfg.season(order.region, order.created_at)
        if region not in regional:
            regional[region] = _popularity(store, cfg, region, "*")
        if (region, season) not in seasonal:
            seasonal[region, season] = _popularity(store, cfg, region, season)
        for query in basket:
            targets = set(basket) - {query}
            recs = await recommend(store, cfg, query, region=region, k=k, at=order.created_at)
            scores["model"].add([r.product_id for r in recs.items], targets, k)
            scores["popularity"].add([p for p in regional[region] if p != query], targets, k)
            scores["seasonal"].add([p for p in seasonal[region, season] if p != query], targets, k)
            scores["ceiling"].add(odds(order, query), targets, k)
            queries += 1
    return scores, queries


def evaluate_recommendations(
    *,
    days: int = 365,
    seed: int = 7,
    k: int = 10,
    orders_per_day: float = 60.0,
    cfg: RecommendConfig | None = None,
    batch_size: int = 512,
) -> RecsEvaluation:
    """Simulate ``days``, train on the first 10/12, score the rest against popularity."""
    started = time.monotonic()
    cfg = cfg or RecommendConfig(southern_regions=get_settings().orders.southern_regions)
    sim = simulate(
        catalogue("eval"), start=START, days=days, orders_per_day=orders_per_day, seed=seed
    )
    split = START + timedelta(days=round(days * TRAIN_FRACTION))
    store, n_train = _train(sim, split, cfg, batch_size)
    test = [o for o in sim.orders if o.created_at >= split]
    scores, queries = asyncio.run(_score(sim, store, cfg, test, k))
    ids = {p.class_name: p.product_id for p in sim.products}
    planted_first = 0
    for first, second in PLANTED_PAIRS:
        recs = asyncio.run(recommend(store, cfg, ids[first], region=None, k=1, at=split))
        planted_first += [r.product_id for r in recs.items] == [ids[second]]
    means = {name: s.means(queries) for name, s in scores.items()}
    return RecsEvaluation(
        days=days,
        seed=seed,
        k=k,
        half_life_days=cfg.half_life_days,
        train_orders=n_train,
        test_orders=len(test),
        queries=queries,
        split_at=split.date().isoformat(),
        model_hit_rate=means["model"][0],
        model_ndcg=means["model"][1],
        popularity_hit_rate=means["popularity"][0],
        popularity_ndcg=means["popularity"][1],
        seasonal_hit_rate=means["seasonal"][0],
        seasonal_ndcg=means["seasonal"][1],
        ceiling_hit_rate=means["ceiling"][0],
        ceiling_ndcg=means["ceiling"][1],
        planted_first=planted_first,
        planted_pairs=len(PLANTED_PAIRS),
        seconds=round(time.monotonic() - started, 2),
    )


def _format(ev: RecsEvaluation) -> str:
    k = ev.k
    rows = [
        ("bought together (model)", ev.model_hit_rate, ev.model_ndcg),
        ("popularity in region", ev.popularity_hit_rate, ev.popularity_ndcg),
        ("model / popularity", ev.hit_rate_ratio, ev.ndcg_ratio),
        ("popularity, region+season", ev.seasonal_hit_rate, ev.seasonal_ndcg),
        ("generator's odds (ceiling)", ev.ceiling_hit_rate, ev.ceiling_ndcg),
    ]
    return "\n".join(
        [
            f"simulated {ev.days} days (seed {ev.seed}), split at {ev.split_at}: "
            f"{ev.train_orders} train orders, {ev.test_orders} test orders, "
            f"{ev.queries} queries (each product of a test basket of 2+)",
            f"{'':28}{'hit rate@' + str(k):>12}{'NDCG@' + str(k):>10}",
            *(f"{name:28}{hit:>12.3f}{ndcg:>10.3f}" for name, hit, ndcg in rows),
            f"planted pairs ranked first: {ev.planted_first}/{ev.planted_pairs} "
            f"(half-life {ev.half_life_days:g} days; {ev.seconds:.1f} s)",
        ]
    )


def run_evaluate_recs(
    *, days: int, seed: int, k: int, as_json: bool, out: TextIO = sys.stdout
) -> int:
    """``vitrine evaluate-recs``: print the evaluation; exit code 0."""
    s = get_settings()
    cfg = RecommendConfig.from_settings(s)
    ev = evaluate_recommendations(days=days, seed=seed, k=k, cfg=cfg)
    print(json.dumps(ev.to_json(), indent=2) if as_json else _format(ev), file=out)
    return 0
