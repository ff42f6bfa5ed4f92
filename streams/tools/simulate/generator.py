"""A year of realistic orders over the sample products: the generator and its ground truth.

``vitrine simulate`` (:mod:`.command` publishes it) and the offline evaluations of
recommendations and forecasts all draw their orders from :func:`simulate`, so what
they are scored against is written down here, once: the catalogue, the regions in
both hemispheres (:data:`REGIONS`), local seasons (:data:`SEASONALITY`), the weekly
rhythm (:data:`WEEKDAY_FACTOR`), promotions, the planted pairs the recommendations
must find (:data:`PLANTED_PAIRS`) and a slow growth. Everything is drawn from one
``random.Random(seed)``: the same arguments give the same orders, byte for byte.
Overview: docs/ANALYTICS.md ("The simulated year").
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from inference.samples import samples
from schemas.records import SCHEMA_VERSION, OrderEvent, OrderItem
from schemas.sales import Hemisphere, season_of
from streams.tools.report.analysis import Dimension

__all__ = [
    "DIMENSIONS",
    "GROWTH_PER_YEAR",
    "PAIR_PROBABILITY",
    "PLANTED_PAIRS",
    "PROMO_DISCOUNT",
    "PROMO_LIFT",
    "REGIONS",
    "SEASONALITY",
    "WEEKDAY_FACTOR",
    "Promotion",
    "Region",
    "SimProduct",
    "Simulation",
    "catalogue",
    "demand_factor",
    "simulate",
]


DIMENSIONS: tuple[Dimension, ...] = ("category", "region", "season")
"""What sales are ranked by."""


@dataclass(frozen=True)
class Region:
    """A sales region, its hemisphere and its share of the orders."""

    name: str
    hemisphere: Hemisphere
    weight: float


REGIONS: tuple[Region, ...] = (
    Region("eu-north", "north", 1.0),
    Region("eu-west", "north", 1.5),
    Region("us-east", "north", 2.0),
    Region("sa-east", "south", 0.9),
    Region("ap-southeast", "south", 1.2),
    Region("af-south", "south", 0.6),
)
"""The simulated regions; the southern ones are the default of
``VITRINE_SOUTHERN_HEMISPHERE_REGIONS``."""

# Kind (the data set's coarse class) -> (peak local day of year, amplitude).
SEASONALITY: dict[str, tuple[int, float]] = {
    # Citrus: mid-winter.
    "Lemon": (15, 0.6),
    "Lime": (15, 0.5),
    "Orange": (15, 0.7),
    "Red-Grapefruit": (15, 0.6),
    "Satsumas": (350, 0.8),
    # Summer vegetables and fruit.
    "Cucumber": (196, 0.6),
    "Zucchini": (196, 0.7),
    "Pepper": (210, 0.5),
    "Aubergine": (210, 0.6),
    "Pineapple": (180, 0.3),
    "Kiwi": (300, 0.3),
    # Late autumn.
    "Cabbage": (320, 0.5),
    "Mushroom": (300, 0.4),
    "Pomegranate": (320, 0.6),
    # Year round.
    "Banana": (0, 0.05),
    "Apple": (280, 0.2),
    "Avocado": (100, 0.2),
    # Drinks in summer; dairy hardly moves.
    "Juice": (200, 0.4),
    "Milk": (0, 0.05),
    "Oat-Milk": (0, 0.05),
    "Soyghurt": (190, 0.15),
    "Yoghurt": (190, 0.15),
}

# Base price (EUR) and popularity (relative demand) of each kind.
_PRICE: dict[str, float] = {
    "Banana": 0.35, "Lemon": 0.45, "Lime": 0.4, "Orange": 0.6, "Red-Grapefruit": 0.9,
    "Satsumas": 2.5, "Pineapple": 2.2, "Pomegranate": 1.5, "Apple": 0.5, "Kiwi": 0.45,
    "Avocado": 1.2, "Pepper": 0.9, "Cucumber": 0.8, "Zucchini": 0.9, "Mushroom": 1.9,
    "Cabbage": 1.3, "Aubergine": 1.1, "Milk": 1.3, "Juice": 2.1, "Oat-Milk": 2.3,
    "Soyghurt": 1.8, "Yoghurt": 1.6,
}  # fmt: skip
_POPULARITY: dict[str, float] = {
    "Banana": 3.0, "Milk": 3.0, "Apple": 2.0, "Orange": 1.6, "Cucumber": 1.5,
    "Pepper": 1.2, "Yoghurt": 1.4, "Oat-Milk": 1.2, "Juice": 1.2, "Lemon": 1.0,
}  # fmt: skip

PLANTED_PAIRS: tuple[tuple[str, str], ...] = (
    ("Lemon", "Lime"),
    ("Cucumber", "Zucchini"),
    ("Oatly-Oat-Milk", "Alpro-Blueberry-Soyghurt"),
    ("Banana", "Arla-Mild-Vanilla-Yoghurt"),
    ("Avocado", "Red-Bell-Pepper"),
    ("Cabbage", "Brown-Cap-Mushroom"),
)
"""Sample class names bought together: the first pulls the second into its basket."""
PAIR_PROBABILITY = 0.6

WEEKDAY_FACTOR: tuple[float, ...] = (0.85, 0.9, 0.95, 1.0, 1.2, 1.35, 0.75)
"""Relative order volume Monday..Sunday."""
GROWTH_PER_YEAR = 0.25
"""Order volume grows linearly by this fraction over 365 days."""
PROMO_DISCOUNT = 0.2
PROMO_LIFT = 2.5
PROMOS_PER_REGION = 6


@dataclass(frozen=True)
class SimProduct:
    """A listed product of the simulation."""

    product_id: str
    class_name: str  # fine class of its photo, e.g. "Red-Bell-Pepper"
    kind: str  # coarse class, e.g. "Pepper"
    category: str  # true product category, e.g. "produce"
    base_price: float
    popularity: float


@dataclass(frozen=True)
class Promotion:
    """One week at a discount with a lift in demand, for one kind in one region."""

    region: str
    kind: str
    start: datetime
    days: int = 7

    def active(self, region: str, kind: str, moment: datetime) -> bool:
        """True while ``moment`` falls in this promotion of ``kind`` in ``region``."""
        return (
            region == self.region
            and kind == self.kind
            and self.start <= moment < self.start + timedelta(days=self.days)
        )


@dataclass
class Simulation:
    """The generated orders (by ``created_at``) and what they add up to."""

    products: list[SimProduct]
    orders: list[OrderEvent]
    start: datetime
    days: int
    promotions: list[Promotion] = field(default_factory=list)

    def category_of(self) -> dict[str, str]:
        """product_id -> true category."""
        return {p.product_id: p.category for p in self.products}

    def revenue_by(self, by: Dimension, *, orders: Iterable[OrderEvent] = ()) -> dict[str, float]:
        """Revenue summed by true category, region or *local* season (ground truth)."""
        cats = self.category_of()
        hemi = {r.name: r.hemisphere for r in REGIONS}
        out: dict[str, float] = defaultdict(float)
        for o in orders or self.orders:
            for it in o.items:
                if by == "category":
                    key = cats[it.product_id]
                elif by == "region":
                    key = o.region
                else:
                    key = season_of(o.created_at, hemi.get(o.region, "north"))
                out[key] += round(it.quantity * it.unit_price, 4)
        return {k: round(v, 2) for k, v in out.items()}

    def ranking(self, by: Dimension) -> list[str]:
        """Names by revenue, best first (ties by name): what `vitrine report` must print."""
        rev = self.revenue_by(by)
        return sorted(rev, key=lambda k: (-rev[k], k))


def catalogue(tag: str) -> list[SimProduct]:
    """One product per shipped sample photo, ids ``sim-<tag>-<class name>``."""
    return [
        SimProduct(
            product_id=f"sim-{tag}-{s.class_name.lower()}",
            class_name=s.class_name,
            kind=s.coarse_class,
            category=s.category,
            base_price=_PRICE.get(s.coarse_class, 1.0),
            popularity=_POPULARITY.get(s.coarse_class, 0.8),
        )
        for s in samples()
    ]


def demand_factor(kind: str, moment: datetime, hemisphere: Hemisphere) -> float:
    """Seasonal demand multiplier of ``kind`` at ``moment`` in ``hemisphere``."""
    peak, amplitude = SEASONALITY.get(kind, (0, 0.0))
    day = moment.timetuple().tm_yday + (182 if hemisphere == "south" else 0)
    return 1.0 + amplitude * math.cos(2 * math.pi * (day - peak) / 365.0)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method; lam stays small here (orders per region-day, basket sizes).
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _promotions(
    rng: random.Random, products: list[SimProduct], start: datetime, days: int
) -> list[Promotion]:
    kinds = sorted({p.kind for p in products})
    return [
        Promotion(
            region.name, rng.choice(kinds), start + timedelta(days=rng.randrange(max(1, days - 7)))
        )
        for region in REGIONS
        for _ in range(PROMOS_PER_REGION)
    ]


def _basket(
    rng: random.Random,
    products: list[SimProduct],
    weights: list[float],
    by_class: dict[str, SimProduct],
) -> list[SimProduct]:
    size = min(6, 1 + _poisson(rng, 1.4))
    chosen: list[SimProduct] = []
    for p in rng.choices(products, weights=weights, k=size):
        if p not in chosen:
            chosen.append(p)
    for first, second in PLANTED_PAIRS:
        a, b = by_class.get(first), by_class.get(second)
        if a in chosen and b is not None and b not in chosen and rng.random() < PAIR_PROBABILITY:
            chosen.append(b)
    return chosen


def simulate(
    products: list[SimProduct],
    *,
    start: datetime,
    days: int = 365,
    orders_per_day: float = 60.0,
    seed: int = 7,
    tag: str = "sim",
) -> Simulation:
    """Generate ``days`` of orders from ``start`` (UTC midnight), sorted by ``created_at``."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    promotions = _promotions(rng, products, start, days)
    by_class = {p.class_name: p for p in products}
    total_weight = sum(r.weight for r in REGIONS)
    orders: list[OrderEvent] = []
    for d in range(days):
        day = start + timedelta(days=d)
        volume = orders_per_day * WEEKDAY_FACTOR[day.weekday()] * (1 + GROWTH_PER_YEAR * d / 365)
        for region in REGIONS:
            active = [pr for pr in promotions if pr.region == region.name]
            weights = []
            for p in products:
                w = p.popularity * demand_factor(p.kind, day, region.hemisphere)
                if any(pr.active(region.name, p.kind, day) for pr in active):
                    w *= PROMO_LIFT
                weights.append(w)
            for _ in range(_poisson(rng, volume * region.weight / total_weight)):
                created = day + timedelta(seconds=rng.randrange(6 * 3600, 23 * 3600))
                items = []
                for p in _basket(rng, products, weights, by_class):
                    promo = any(pr.active(region.name, p.kind, created) for pr in active)
                    price = p.base_price * (1 - PROMO_DISCOUNT if promo else 1.0)
                    items.append(
                        OrderItem(
                            product_id=p.product_id,
                            quantity=rng.choice((1, 1, 1, 2, 2, 3, 4)),
                            unit_price=round(price, 2),
                        )
                    )
                n = len(orders)
                orders.append(
                    OrderEvent(
                        schema_version=SCHEMA_VERSION,
                        event_id=f"{tag}-{seed}-{n}",
                        occurred_at=created + timedelta(seconds=1),
                        order_id=f"{tag}-{seed}-order-{n}",
                        customer_id=f"{region.name}-c{rng.randrange(2000)}",
                        region=region.name,
                        currency="EUR",
                        created_at=created,
                        items=tuple(items),
                    )
                )
    orders.sort(key=lambda o: o.created_at)
    return Simulation(products, orders, start, days, promotions)
