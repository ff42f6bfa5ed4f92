"""The label cache, claims and recommendation updates on a real Redis Cluster.

Keys of a batch spread over the cluster's three masters; every multi-key call
must still answer in the caller's order, and the recommendations written through
the per-slot scripts must equal those written to one Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis

from schemas.records import SCHEMA_VERSION, EnrichedItem, EnrichedOrder
from streams.tools.rebuild import drop_views
from streams.tools.redis_cluster import RedisClusterStack
from streams.worker.cache import LabelCache
from streams.worker.imageresult import ImageResult
from streams.worker.recommend import RecommendConfig, Recommender
from streams.worker.state import ProductState, encode_product_state
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration

MODEL = ("grocery", "v1")


def _result(label: str) -> ImageResult:
    return ImageResult(
        labels=((label, 1.0),), category="c", score=1.0, model_name=MODEL[0], model_version=MODEL[1]
    )


def cluster_cache(cluster: RedisClusterStack, prefix: str) -> LabelCache:
    return LabelCache(cluster.url, ttl_s=600, timeout_ms=500, prefix=prefix, cluster=True)


def test_label_cache_batches_span_the_masters_and_keep_their_order(
    redis_cluster: RedisClusterStack,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    hashes = [uuid.uuid4().hex * 2 for _ in range(120)]
    products = [f"p-{i}" for i in range(120)]

    async def run() -> None:
        cache = cluster_cache(redis_cluster, prefix)
        try:
            assert cache.cluster
            assert await cache.ping()
            written = hashes[::2]
            results = {h: _result(f"label-{i}") for i, h in enumerate(written)}
            states = {p: ProductState(f"c{i}", i / 200, "v1", i) for i, p in enumerate(products)}
            assert await cache.put(results)
            got = await cache.get_images(hashes, *MODEL)
            assert got == [results.get(h) for h in hashes]
            # The view builder's writes: one MSET over every slot, in one pipeline.
            encoded = {cache.product_key(p): encode_product_state(v) for p, v in states.items()}
            await cache.pipelined("t", lambda pipe: cache.queue_set_many(pipe, encoded))
            assert await cache.get_products(products[::-1]) == [states[p] for p in products[::-1]]
            # `vitrine rebuild --reset`: every view key found on every master, and unlinked.
            assert await drop_views(cache) == len(products)
            assert await cache.get_products(products) == [None] * len(products)
            assert await cache.get_images(hashes[:3], "grocery", "v2") == [None] * 3

            # Claims: SET NX per image, a second claim loses, a result ends the claim.
            fresh = [uuid.uuid4().hex * 2 for _ in range(40)]
            nothing = [None] * 40
            assert await cache.claim_images(fresh, "w1", *MODEL, 10_000) == ([True] * 40, nothing)
            assert await cache.claim_images(fresh, "w2", *MODEL, 10_000) == ([False] * 40, nothing)
            seen, held = await cache.peek_claimed(fresh, *MODEL)
            assert (seen, held) == ([None] * 40, [True] * 40)
            done = {fresh[0]: _result("done")}
            assert await cache.put(done)
            await cache.release_claims(fresh[1:20], "v1")
            seen, held = await cache.peek_claimed(fresh, *MODEL)
            assert seen == [done[fresh[0]]] + [None] * 39
            assert held == [False] * 20 + [True] * 20
            # A claim won after the result was written comes back with the result.
            again = await cache.claim_images(fresh[:1], "w3", *MODEL, 10_000)
            assert again == ([True], [done[fresh[0]]])
            assert cache.available
        finally:
            await cache.close()

    asyncio.run(run())
    # The batch really spread over every master.
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        nodes = {client.get_node_from_key(f"{prefix}:product:{p}").name for p in products}
    finally:
        client.close()
    assert len(nodes) == 3


def _orders(n: int) -> list[EnrichedOrder]:
    at = datetime(2025, 7, 1, 12, tzinfo=UTC)
    out = []
    for i in range(n):
        items = tuple(
            EnrichedItem(
                product_id=f"p{(i * 7 + j * 3) % 60}",
                quantity=1 + j,
                unit_price=1.0,
                line_total=float(1 + j),
                category=f"cat{(i + j) % 4}",
                category_status="labelled",
                unknown_reason=None,
            )
            for j in range(1 + i % 4)
        )
        out.append(
            EnrichedOrder(
                schema_version=SCHEMA_VERSION,
                event_id=f"e{i}",
                occurred_at=at,
                order_id=f"o{i}",
                region=("eu-north", "sa-east")[i % 2],
                currency="EUR",
                created_at=at,
                items=items,
                order_total=sum(x.line_total for x in items),
                enriched_at=at,
            )
        )
    return out


def test_recommendations_on_the_cluster_equal_those_on_one_redis(
    kafka_stack: LocalStack, redis_cluster: RedisClusterStack
) -> None:
    tag = uuid.uuid4().hex[:8]
    orders = _orders(300)

    async def tops(cache: LabelCache, prefix: str) -> list[list[tuple[str, float]]]:
        cfg = RecommendConfig(prefix=prefix, max_members=10)
        rec = Recommender(cache, cfg)
        try:
            for start in range(0, len(orders), 100):
                await rec.observe(orders[start : start + 100])
            keys = [cfg.together_key(f"p{i}") for i in range(60)]
            keys += [cfg.popular_anywhere_key(f"cat{i}") for i in range(4)]
            lists, _ = await rec.tops(keys, 10)
            assert cache.available
            return lists
        finally:
            await cache.close()

    one = LabelCache(kafka_stack.redis_url, ttl_s=600, timeout_ms=500, prefix=f"o-{tag}")
    on_one = asyncio.run(tops(one, f"o-{tag}"))
    on_cluster = asyncio.run(tops(cluster_cache(redis_cluster, f"c-{tag}"), f"c-{tag}"))
    assert sum(map(len, on_one)) > 200
    assert [[m for m, _ in lst] for lst in on_cluster] == [[m for m, _ in lst] for lst in on_one]
    for a, b in zip(on_cluster, on_one, strict=True):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9)
