"""The image cache and claims on a real Redis: typed results in and out, misses, outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis

from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.imageresult import ImageResult

SHA = [f"{i:02x}" * 32 for i in range(4)]


def _result(label: str, version: str = "v1", vector: str | None = None) -> ImageResult:
    return ImageResult(
        labels=((label, 0.9),),
        category="produce",
        score=0.9,
        model_name="m",
        model_version=version,
        vector=vector,
    )


def test_results_round_trip_and_other_models_miss(new_cache: Callable[..., LabelCache]) -> None:
    async def run() -> None:
        cache = new_cache()
        try:
            written = {SHA[0]: _result("Banana", vector="AAA="), SHA[1]: _result("Lemon")}
            assert await cache.put(written)
            got = await cache.get_images(SHA[:3], "m", "v1")
            assert got == [written[SHA[0]], written[SHA[1]], None]
            assert await cache.get_images(SHA[:2], "m", "v2") == [None, None]
            assert await cache.get_images(SHA[:2], "other", "v1") == [None, None]
            assert await cache.get_images([], "m", "v1") == []
        finally:
            await cache.close()

    asyncio.run(run())


def test_an_entry_an_earlier_worker_wrote_is_a_hit_and_garbage_a_miss(
    redis_url: str, new_cache: Callable[..., LabelCache]
) -> None:
    old = {"labels": [["Kiwi", 0.8]], "category": "produce", "score": 0.8, "flags": []}
    old |= {"model_name": "m", "model_version": "v1"}
    probe = new_cache()
    plain = redis.Redis.from_url(redis_url)
    plain.set(probe.image_key(SHA[0]), json.dumps(old))
    plain.set(probe.image_key(SHA[1]), b"\x00not json")
    plain.close()

    async def run() -> list[ImageResult | None]:
        cache = new_cache()
        try:
            return await cache.get_images(SHA[:2], "m", "v1")
        finally:
            await cache.close()

    hit, miss = asyncio.run(run())
    assert hit is not None
    assert hit.label == "Kiwi"
    assert hit.vector is None
    assert miss is None


def test_results_expire_with_the_ttl(redis_url: str, new_cache: Callable[..., LabelCache]) -> None:
    async def run() -> str:
        cache = new_cache()
        try:
            assert await cache.put({SHA[0]: _result("Banana")})
            return cache.image_key(SHA[0])
        finally:
            await cache.close()

    key = asyncio.run(run())
    ttl = redis.Redis.from_url(redis_url).ttl(key)
    assert 0 < ttl <= 600


def test_a_claim_is_won_once_and_ends_with_its_result(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> None:
        cache = new_cache()
        try:
            none = [None] * 4
            assert await cache.claim_images(SHA, "w1", "m", "v1", 60_000) == ([True] * 4, none)
            assert await cache.claim_images(SHA, "w2", "m", "v1", 60_000) == ([False] * 4, none)
            # A claim its holder sends again (a client's retry) is still its own.
            assert await cache.claim_images(SHA[:1], "w1", "m", "v1", 60_000) == ([True], [None])
            # Another model version is another claim.
            assert await cache.claim_images(SHA[:1], "w2", "m", "v2", 60_000) == ([True], [None])
            assert await cache.put({SHA[0]: _result("Banana")})
            await cache.release_claims(SHA[1:2], "v1")
            found, held = await cache.peek_claimed(SHA, "m", "v1")
            assert found == [_result("Banana"), None, None, None]
            assert held == [False, False, True, True]
        finally:
            await cache.close()

    asyncio.run(run())


def test_while_redis_is_down_everything_misses_and_every_claim_is_ours(
    down_url: str, new_cache: Callable[..., LabelCache]
) -> None:
    async def run() -> None:
        cache = new_cache(down_url)
        try:
            assert await cache.get_images(SHA[:2], "m", "v1") == [None, None]
            won = await cache.claim_images(SHA[:2], "w1", "m", "v1", 1000)
            assert won == ([True, True], [None, None])
            assert not await cache.put({SHA[0]: _result("Banana")})
            with pytest.raises(CacheUnavailable):
                await cache.get_products(["p"])
            assert not cache.available
        finally:
            await cache.close()

    asyncio.run(run())


def test_refused_credentials_are_logged_once_even_after_a_timeout(
    redis_url: str, new_cache: Callable[..., LabelCache], caplog: pytest.LogCaptureFixture
) -> None:
    # A loaded machine can time out the first call before Redis refuses the
    # credentials: the operator must still be told which setting is wrong.
    wrong = redis_url.replace("redis://", "redis://nobody:not-the-password@")

    async def run() -> None:
        cache = new_cache(wrong)
        try:
            cache._failed("views_offsets", redis.exceptions.TimeoutError("slow"))
            for _ in range(3):
                cache._next_try = 0.0  # retry at once instead of after the back-off
                assert await cache.get_images(SHA[:1], "m", "v1") == [None]
        finally:
            await cache.close()

    with caplog.at_level("WARNING", logger="streams.worker.cache"):
        asyncio.run(run())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis refused the credentials" in m for m in messages) == 1
    assert not any("not-the-password" in m for m in messages)
