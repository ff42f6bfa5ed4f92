"""``vitrine rebuild`` and ``vitrine bench rebuild``: the Redis views from the record topics.

``vitrine rebuild`` joins the view builders' consumer group
(:mod:`streams.worker.views`) and applies its share of ``product-labels`` and
``orders-enriched`` until every partition of both is covered; with ``--reset``
it first drops the views' keys and offsets, so that every builder (the running
workers' too) reads the topics again from the beginning. Use ``--reset`` after
a Redis that kept only part of its data, or when upgrading from a version that
kept state in Redis alone (the recommendation sets would otherwise be counted
twice).

``vitrine bench rebuild`` measures the rebuild: N synthetic product labels are
written to a fresh compacted topic, then, in one run, the same N product states
are written to Redis with plain pipelined SETs (the ceiling: no Kafka, no
decoding) and rebuilt by a :class:`~streams.worker.views.ViewBuilder` from the
topic (what a worker does after Redis came back empty). It reports products/s
of both, their ratio, and the Redis bytes per product of the view.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from schemas import codec
from schemas.records import SCHEMA_VERSION, Label, ProductLabelled, Timings
from streams.settings import Settings
from streams.worker.cache import LabelCache
from streams.worker.kafka_config import aiokafka_config
from streams.worker.recommend import RecommendConfig, Recommender
from streams.worker.state import ProductState, encode_product_state
from streams.worker.views import ViewBuilder

__all__ = [
    "RebuildResult",
    "bench_rebuild",
    "bench_rebuild_command",
    "drop_views",
    "rebuild_views",
]

logger = logging.getLogger(__name__)

#: Key patterns of the views (after ``<prefix>:``); the image cache is left alone.
VIEW_PATTERNS = ("product:*", "rec:*", "pop:*", "popall:*", "views:offsets")


@dataclass(frozen=True)
class RebuildResult:
    """What one rebuild applied and how long it took."""

    records: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def drop_views(cache: LabelCache) -> int:
    """Delete every key of the views (not the image cache); the number deleted."""
    client: Any = cache._redis
    deleted = 0
    for pattern in VIEW_PATTERNS:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{cache.prefix}:{pattern}", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await _delete(cache, batch)
                batch = []
        if batch:
            deleted += await _delete(cache, batch)
    return deleted


async def _delete(cache: LabelCache, keys: list[Any]) -> int:
    def fill(pipe: Any) -> None:
        for key in keys:
            pipe.unlink(key)

    return sum(int(n) for n in await cache.pipelined("views_drop", fill))


async def rebuild_views(
    s: Settings,
    *,
    labels_topic: str | None = None,
    orders_topic: str | None = None,
    prefix: str | None = None,
    reset: bool = False,
    timeout_s: float = 3600.0,
    say: Callable[[str], None] = print,
) -> RebuildResult:
    """Apply the record topics to the views until every partition of both is covered."""
    labels = labels_topic or s.topics.product_labels
    orders = orders_topic or s.topics.orders_enriched
    cache = LabelCache.from_settings(s)
    if prefix is not None:
        cache.prefix = prefix
    config = RecommendConfig.from_settings(s)
    recommender = Recommender(cache, config if prefix is None else replace(config, prefix=prefix))
    builder = ViewBuilder(
        labels_topic=labels,
        orders_topic=orders,
        cache=cache,
        recommender=recommender,
        client_config=aiokafka_config(s),
        group_id=s.kafka.views_consumer_group if prefix is None else f"{prefix}-views",
    )
    try:
        if reset:
            say(f"dropped {await drop_views(cache)} view keys under {cache.prefix}:")
        started = time.monotonic()
        await builder.start()
        marks = {t: await _mark(builder, t) for t in (labels, orders)}
        deadline = started + timeout_s
        next_say = started + 2.0
        while not await _covered(builder, marks):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the views did not cover {labels} and {orders} in {timeout_s} s"
                )
            if time.monotonic() >= next_say:
                say(f"  {builder.applied} records applied, {builder.behind} to go ...")
                next_say += 2.0
            await asyncio.sleep(0.05)
        return RebuildResult(builder.applied, time.monotonic() - started)
    finally:
        await builder.stop()
        await cache.close()


async def _mark(builder: ViewBuilder, topic: str) -> dict[int, int]:
    for _ in range(200):  # the consumer's first metadata
        try:
            return await builder.mark(topic)
        except Exception:
            await asyncio.sleep(0.05)
    return await builder.mark(topic)


async def _covered(builder: ViewBuilder, marks: dict[str, dict[int, int]]) -> bool:
    for topic, mark in marks.items():
        if not await builder.covers(mark, topic):
            return False
    return True


# --- the benchmark ---------------------------------------------------------------------
def _label(i: int, run: str, now: datetime) -> ProductLabelled:
    sha = hashlib.sha256(f"{run}-{i}".encode()).hexdigest()
    return ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=f"{run}-{i}",
        occurred_at=now,
        product_id=f"bench-{run}-{i}",
        labels=(Label(label="Banana", score=0.91), Label(label="Lemon", score=0.04)),
        category=("produce", "dairy", "beverages")[i % 3],
        category_score=0.93,
        model_name="grocery-store",
        model_version="bench",
        image_sha256=sha,
        timings=Timings(decode_ms=1.0, inference_ms=2.0, end_to_end_ms=5.0),
        labelled_at=now,
        seller_id=f"seller-{i % 1000}",
    )


def _publish(s: Settings, topic: str, n: int, run: str, say: Callable[[str], None]) -> float:
    from streams.tools.kafka_clients import create_topics, make_producer  # noqa: PLC0415

    create_topics(s, {topic: s.topics.partitions})
    producer = make_producer(s, acks=1, linger_ms=50, batch_size=1 << 20)
    now = datetime.now(UTC)
    started = time.monotonic()
    for i in range(n):
        producer.send(
            topic, key=f"bench-{run}-{i}".encode(), value=codec.encode(_label(i, run, now))
        )
        if i and i % 200_000 == 0:
            say(f"  published {i:,} ...")
    producer.flush()
    producer.close()
    return time.monotonic() - started


async def _plain_writes(s: Settings, prefix: str, n: int, run: str) -> tuple[float, int]:
    """Pipelined SETs of the same product states (chunks of 10,000); (seconds, bytes added)."""
    cache = LabelCache.from_settings(s)
    cache.prefix = prefix
    now = datetime.now(UTC)
    states = [
        (cache.product_key(f"bench-{run}-{i}"), encode_product_state(ProductState.of(lab)))
        for i in range(n)
        for lab in (_label(i, run, now),)
    ]
    before = await _used_memory(cache)
    started = time.monotonic()
    for lo in range(0, n, 10_000):
        chunk = states[lo : lo + 10_000]

        def fill(pipe: Any, chunk: list[tuple[str, bytes]] = chunk) -> None:
            for key, value in chunk:
                pipe.set(key, value)

        await cache.pipelined("bench_plain", fill)
    took = time.monotonic() - started
    added = await _used_memory(cache) - before
    await cache.close()
    return took, added


async def _used_memory(cache: LabelCache) -> int:
    info: Any = await cache._redis.info("memory")
    if isinstance(info, dict) and "used_memory" in info:
        return int(info["used_memory"])
    # A cluster answers per node.
    return sum(int(v["used_memory"]) for v in info.values())


async def _clean(s: Settings, prefix: str) -> None:
    cache = LabelCache.from_settings(s)
    cache.prefix = prefix
    try:
        await drop_views(cache)
    finally:
        await cache.close()


def bench_rebuild(
    s: Settings, *, n_products: int, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Plain pipelined writes against a rebuild from the topic, same products, one run."""
    run = uuid.uuid4().hex[:8]
    labels_topic = f"bench-rebuild-{run}-labels"
    orders_topic = f"bench-rebuild-{run}-orders"
    from streams.tools.kafka_clients import create_topics  # noqa: PLC0415

    create_topics(s, {orders_topic: s.topics.partitions})
    say(f"bench rebuild: publishing {n_products:,} product labels to {labels_topic} ...")
    publish_s = _publish(s, labels_topic, n_products, run, say)
    plain_prefix, view_prefix = f"bench-{run}-plain", f"bench-{run}-view"
    try:
        say("plain pipelined SETs of the same product states ...")
        plain_s, plain_bytes = asyncio.run(_plain_writes(s, plain_prefix, n_products, run))
        say("rebuild from the topic (a ViewBuilder, as a worker after Redis came back empty) ...")

        async def rebuild() -> tuple[RebuildResult, int]:
            cache = LabelCache.from_settings(s)
            cache.prefix = view_prefix
            before = await _used_memory(cache)
            result = await rebuild_views(
                s, labels_topic=labels_topic, orders_topic=orders_topic,
                prefix=view_prefix, say=say,
            )  # fmt: skip
            added = await _used_memory(cache) - before
            await cache.close()
            return result, added

        result, view_bytes = asyncio.run(rebuild())
    finally:
        asyncio.run(_clean(s, plain_prefix))
        asyncio.run(_clean(s, view_prefix))
    plain_per_s = n_products / plain_s if plain_s > 0 else 0.0
    return {
        "products": n_products,
        "partitions": s.topics.partitions,
        "publish_s": round(publish_s, 2),
        "plain_writes": {"seconds": round(plain_s, 3), "per_s": round(plain_per_s, 1)},
        "rebuild": {
            "records": result.records,
            "seconds": round(result.seconds, 3),
            "per_s": round(result.per_s, 1),
        },
        "rebuild_vs_plain": round(result.per_s / plain_per_s, 3) if plain_per_s else None,
        "redis_bytes_per_product": {
            "plain": round(plain_bytes / n_products, 1),
            "view": round(view_bytes / n_products, 1),
        },
        "at_10m_products_s": round(10_000_000 / result.per_s, 1) if result.per_s else None,
    }


def print_bench(result: dict[str, Any]) -> None:
    """The benchmark as a few lines a person reads."""
    plain, rebuilt = result["plain_writes"], result["rebuild"]
    per = result["redis_bytes_per_product"]
    print(
        f"\n{result['products']:,} products, {result['partitions']} partitions\n"
        f"plain pipelined SETs   {plain['per_s']:>12,.0f} products/s ({plain['seconds']} s)\n"
        f"rebuild from the topic {rebuilt['per_s']:>12,.0f} products/s ({rebuilt['seconds']} s)\n"
        f"rebuild / plain        {result['rebuild_vs_plain']:>12}\n"
        f"Redis bytes / product  {per['view']:>12} (plain SETs: {per['plain']})\n"
        f"10M products rebuilt in about {result['at_10m_products_s']} s"
    )


def bench_rebuild_command(*, as_json: bool, n_products: int) -> int:
    """``vitrine bench rebuild``: run :func:`bench_rebuild` and print a table or one JSON object."""
    import json  # noqa: PLC0415

    from streams.settings import get_settings  # noqa: PLC0415

    say: Callable[[str], None] = (lambda _m: None) if as_json else print
    result = bench_rebuild(get_settings(), n_products=n_products, say=say)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_bench(result)
    return 0
