"""Item-to-item "bought together" recommendations, kept in Redis sorted sets.

The sets are a view of ``orders-enriched`` that the view builder
(:mod:`streams.worker.views`) applies batch by batch, and refills from the topic
when Redis comes back empty. Scores use forward decay by event time, so nothing
is rewritten as time passes. A batch's increments are summed in memory and
written by a Lua script (ZINCRBY, trim; one call per hash slot on a cluster) in
one pipeline: one round trip per batch. The update (:func:`increments`,
:func:`merge_increments`) and the query (:func:`recommend`) are plain functions
over a :class:`SortedSetReader`, so ``streams/tools/recommend_eval.py`` runs the
worker's own logic in memory. Keys, design and measurements: docs/RECOMMENDATIONS.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from schemas.records import EnrichedOrder, Season
from schemas.sales import SEASONS, season_of
from streams.settings import Settings
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.redisclient import group_by_slot
from streams.worker.state import decode_product_state

__all__ = [
    "DECAY_EPOCH",
    "Increment",
    "RecommendConfig",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "Scored",
    "ScriptCall",
    "SortedSetReader",
    "Source",
    "increments",
    "merge_increments",
    "recommend",
]

logger = logging.getLogger(__name__)

#: The fixed landmark of forward decay. Changing it rescales every stored score by
#: the same factor, so it may only change together with a wipe of the keys.
DECAY_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

#: (Redis key, sorted-set member, score increment).
Increment = tuple[str, str, float]
#: (member, score), highest first.
Scored = tuple[str, float]
#: One call of the update script: its KEYS and ARGV.
ScriptCall = tuple[list[str], list[str | int | float]]
Source = Literal["bought_together", "popular_in_category"]


@dataclass(frozen=True)
class RecommendConfig:
    """Keys, decay and bounds of the recommendation sorted sets."""

    prefix: str = "vitrine"
    half_life_days: float = 30.0
    southern_regions: frozenset[str] = frozenset()
    max_members: int = 100
    max_basket_lines: int = 50

    @classmethod
    def from_settings(cls, s: Settings) -> RecommendConfig:
        """The configuration the ``recommend_*`` settings describe."""
        return cls(
            prefix=s.redis.key_prefix,
            half_life_days=s.recommend.half_life_days,
            southern_regions=s.orders.southern_regions,
            max_members=s.recommend.max_members,
            max_basket_lines=s.recommend.max_basket_lines,
        )

    @property
    def tau_s(self) -> float:
        """Decay time constant: a weight falls by e per ``tau_s`` of age."""
        return self.half_life_days * 86400 / math.log(2)

    def weight(self, moment: datetime) -> float:
        """Forward-decay weight of an event at ``moment``."""
        return math.exp((moment - DECAY_EPOCH).total_seconds() / self.tau_s)

    def season(self, region: str, moment: datetime) -> Season:
        """The local season of ``moment`` in ``region``."""
        return season_of(moment, "south" if region in self.southern_regions else "north")

    def together_key(self, product_id: str) -> str:
        """Products bought with ``product_id``."""
        return f"{self.prefix}:rec:{product_id}"

    def popular_key(self, region: str, season: Season, category: str) -> str:
        """Products of ``category`` by units sold in ``region`` in local ``season``."""
        return f"{self.prefix}:pop:{region}:{season}:{category}"

    def popular_anywhere_key(self, category: str) -> str:
        """Products of ``category`` by units sold in every region and season."""
        return f"{self.prefix}:popall:{category}"


def increments(order: EnrichedOrder, cfg: RecommendConfig) -> Iterator[Increment]:
    """What one enriched order adds to the sorted sets, by its event time."""
    w = cfg.weight(order.created_at)
    units: dict[str, int] = {}
    category: dict[str, str] = {}
    for it in order.items:
        units[it.product_id] = units.get(it.product_id, 0) + it.quantity
        if it.category_status != "unknown":
            category[it.product_id] = it.category
    products = list(units)
    if 2 <= len(products) <= cfg.max_basket_lines:
        for a in products:
            key = cfg.together_key(a)
            for b in products:
                if b != a:
                    yield key, b, w
    season = cfg.season(order.region, order.created_at)
    for product_id, cat in category.items():
        sold = units[product_id] * w
        yield cfg.popular_key(order.region, season, cat), product_id, sold
        yield cfg.popular_anywhere_key(cat), product_id, sold


def merge_increments(
    orders: Iterable[EnrichedOrder], cfg: RecommendConfig
) -> dict[str, dict[str, float]]:
    """The orders' increments summed per key and member: what one batch writes."""
    merged: dict[str, dict[str, float]] = {}
    for order in orders:
        for key, member, amount in increments(order, cfg):
            members = merged.setdefault(key, {})
            members[member] = members.get(member, 0.0) + amount
    return merged


@dataclass(frozen=True)
class Recommendation:
    """One recommended product, its score and where it came from."""

    product_id: str
    #: Decayed co-purchases (bought_together) or units sold (popular_in_category) as of ``at``.
    score: float
    source: Source


@dataclass(frozen=True)
class Recommendations:
    """The answer to one query."""

    product_id: str
    region: str | None
    category: str | None
    season: Season | None
    at: datetime
    items: list[Recommendation] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the HTTP endpoint's and ``vitrine recommend --json``'s body)."""
        return {
            "product_id": self.product_id,
            "region": self.region,
            "category": self.category,
            "season": self.season,
            "at": self.at.isoformat(),
            "items": [
                {"product_id": r.product_id, "score": r.score, "source": r.source}
                for r in self.items
            ],
        }


class SortedSetReader(Protocol):
    """Where :func:`recommend` reads: Redis in the worker, a dict in the evaluation."""

    async def tops(
        self, keys: Sequence[str], n: int, category_of: str | None = None
    ) -> tuple[list[list[Scored]], str | None]:
        """The ``n`` best members of each key, and ``category_of``'s category if asked."""
        ...


def _fallback_groups(
    cfg: RecommendConfig, category: str, region: str | None, season: Season | None
) -> list[list[str]]:
    """Popularity keys to fill from, best first; the keys of a group are summed."""
    groups: list[list[str]] = []
    if region is not None and season is not None:
        groups.append([cfg.popular_key(region, season, category)])
        groups.append([cfg.popular_key(region, s, category) for s in SEASONS])
    groups.append([cfg.popular_anywhere_key(category)])
    return groups


async def recommend(
    reader: SortedSetReader,
    cfg: RecommendConfig,
    product_id: str,
    *,
    region: str | None,
    k: int,
    at: datetime,
) -> Recommendations:
    """The ``k`` products most bought with ``product_id``, topped up from popularity.

    When fewer than ``k`` products were ever bought with it (a new product), the
    rest are the most popular products of its category (from its label in
    Redis) in ``region`` in the local season of ``at``, then in any season, then
    in any region. Scores of a top-up group are summed over its keys, each key
    read to ``2k + 1`` members: an approximation that only matters far down.
    """
    season = cfg.season(region, at) if region is not None else None
    scale = 1.0 / cfg.weight(at)
    (together,), category = await reader.tops(
        [cfg.together_key(product_id)], k + 1, category_of=product_id
    )
    items = [
        Recommendation(member, score * scale, "bought_together")
        for member, score in together
        if member != product_id
    ][:k]
    if len(items) < k and category is not None:
        groups = _fallback_groups(cfg, category, region, season)
        lists, _ = await reader.tops([key for g in groups for key in g], 2 * k + 1)
        seen = {product_id, *(r.product_id for r in items)}
        start = 0
        for group in groups:
            summed: dict[str, float] = {}
            for scored in lists[start : start + len(group)]:
                for member, score in scored:
                    summed[member] = summed.get(member, 0.0) + score
            start += len(group)
            for member, score in sorted(summed.items(), key=lambda ms: (-ms[1], ms[0])):
                if len(items) >= k:
                    break
                if member not in seen:
                    seen.add(member)
                    items.append(Recommendation(member, score * scale, "popular_in_category"))
    return Recommendations(product_id, region, category, season, at, items)


#: KEYS: sorted sets; ARGV: max_members, then for each key its member count and
#: its (member, increment) pairs. Ranks ascend by score: removing ranks 0 to
#: -(keep + 1) keeps the best ``keep``. No EXPIRE: the sets are state (a view of
#: orders-enriched), never evicted; the topic's retention bounds what a rebuild
#: counts.
_UPDATE_SCRIPT = """
local keep, a = tonumber(ARGV[1]), 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('ZINCRBY', key, ARGV[a + 1], ARGV[a])
    a = a + 2
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
end
return #KEYS
"""
#: Orders stamped later than this after the worker's clock are not counted.
_FUTURE_SLACK = timedelta(days=1)
#: Increments per script call: bounds how long one call holds Redis, while the
#: calls of a batch still share one round trip.
_SCRIPT_CHUNK = 2048


def _script_chunks(
    merged: dict[str, dict[str, float]], cfg: RecommendConfig, *, by_slot: bool = False
) -> Iterator[ScriptCall]:
    """(KEYS, ARGV) of the :data:`_UPDATE_SCRIPT` calls that write ``merged``.

    ``by_slot`` (a Redis Cluster): the KEYS of each call lie in one hash slot.
    """
    for group in group_by_slot(merged) if by_slot else [list(merged)]:
        keys: list[str] = []
        args: list[str | int | float] = [cfg.max_members]
        for key in group:
            members = merged[key]
            keys.append(key)
            args.append(len(members))
            for member, amount in members.items():
                args += (member, amount)
            if len(args) >= 2 * _SCRIPT_CHUNK:
                yield keys, args
                keys, args = [], [cfg.max_members]
        if keys:
            yield keys, args


class Recommender:
    """The worker's recommendations in Redis: batch updates and queries.

    Shares the label cache's connection pool and outage state: one Redis, one
    outage, logged once.
    """

    def __init__(self, cache: LabelCache, cfg: RecommendConfig) -> None:
        self.cache = cache
        self.cfg = cfg

    def updates(self, orders: Sequence[EnrichedOrder]) -> list[ScriptCall]:
        """The script calls that count ``orders`` (summed per key and member first)."""
        horizon = datetime.now(UTC) + _FUTURE_SLACK
        counted = [o for o in orders if o.created_at <= horizon]
        if len(counted) < len(orders):
            logger.warning(
                "%d orders created more than %s after now not counted in recommendations",
                len(orders) - len(counted),
                _FUTURE_SLACK,
            )
        merged = merge_increments(counted, self.cfg)
        return list(_script_chunks(merged, self.cfg, by_slot=self.cache.cluster))

    @staticmethod
    def queue(pipe: Any, calls: Sequence[ScriptCall]) -> None:
        """Queue ``calls`` on ``pipe`` (the view builder's, with the batch's other writes)."""
        for keys, args in calls:
            pipe.eval(_UPDATE_SCRIPT, len(keys), *keys, *args)

    async def observe(self, orders: Sequence[EnrichedOrder]) -> None:
        """Count ``orders`` now, in one round trip; never raises for Redis."""
        calls = self.updates(orders)
        if not calls:
            return
        # Down: counted in vitrine_cache_bypassed_total{op="recommend_update"}, one per batch.
        with contextlib.suppress(CacheUnavailable):
            await self.cache.pipelined("recommend_update", lambda pipe: self.queue(pipe, calls))

    async def tops(
        self, keys: Sequence[str], n: int, category_of: str | None = None
    ) -> tuple[list[list[Scored]], str | None]:
        """One pipelined read; raises CacheUnavailable when Redis is down."""

        def fill(pipe: Any) -> None:
            for key in keys:
                pipe.zrevrange(key, 0, n - 1, withscores=True)
            if category_of is not None:
                pipe.get(self.cache.product_key(category_of))

        replies = await self.cache.pipelined("recommend_query", fill)
        lists = [
            [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in reply]
            for reply in replies[: len(keys)]
        ]
        state = None
        if category_of is not None and replies[-1] is not None:
            state = decode_product_state(replies[-1])
        return lists, None if state is None else state.category

    async def recommend(
        self, product_id: str, *, region: str | None = None, k: int = 10, at: datetime | None = None
    ) -> Recommendations:
        """:func:`recommend` on Redis; raises CacheUnavailable when Redis is down."""
        return await recommend(
            self, self.cfg, product_id, region=region, k=k, at=at or datetime.now(UTC)
        )
