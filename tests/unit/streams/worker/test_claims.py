"""One inference per new image: in-process flights, and claims across workers on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from inference.serving.errors import ImageError
from streams.worker.cache import LabelCache
from streams.worker.claims import ImageClaims, Outcome, SingleFlight
from streams.worker.imageresult import ImageResult

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32
RESULT = ImageResult(
    labels=(("Banana", 0.9),), category="produce", score=0.9, model_name="m", model_version="v1"
)
FAILED = ImageError("image.decode_failed", "not an image")


# --- in this process -----------------------------------------------------------
def test_a_second_batch_takes_the_first_ones_result_until_redis_has_it() -> None:
    async def run() -> None:
        flights = SingleFlight()
        owned = flights.start([A, B])
        assert len(flights) == 2
        joined = {A: flights.under_way(A), B: flights.under_way(B)}
        assert flights.under_way(C) is None
        waiting = asyncio.ensure_future(SingleFlight.wait(joined))  # type: ignore[arg-type]
        flights.finish(owned, {A: RESULT, B: FAILED})
        outcomes, cancelled = await waiting
        assert outcomes == {A: RESULT, B: FAILED}
        assert cancelled == []
        # A failed image leaves at once; a result stays shared until Redis holds it.
        assert flights.under_way(B) is None
        assert flights.under_way(A) is owned[A]
        flights.forget([A, C])
        assert len(flights) == 0

    asyncio.run(run())


def test_a_failed_inference_sends_its_waiters_to_infer_themselves() -> None:
    async def run() -> None:
        flights = SingleFlight()
        owned = flights.start([A, B])
        joined = dict(owned)
        waiting = asyncio.ensure_future(SingleFlight.wait(joined))
        flights.finish(owned, {})  # the executor raised: no outcomes at all
        outcomes, cancelled = await waiting
        assert outcomes == {}
        assert sorted(cancelled) == [A, B]
        assert len(flights) == 0

    asyncio.run(run())


def test_forget_keeps_a_flight_still_under_way() -> None:
    async def run() -> None:
        flights = SingleFlight()
        owned = flights.start([A])
        flights.forget([A])  # not done: another batch may still join it
        assert flights.under_way(A) is owned[A]
        outcomes: dict[str, Outcome] = {A: RESULT}
        flights.finish(owned, outcomes)
        flights.forget([A])
        assert flights.under_way(A) is None

    asyncio.run(run())


def test_waiting_for_nothing_returns_at_once() -> None:
    assert asyncio.run(SingleFlight.wait({})) == ({}, [])


# --- across workers ---------------------------------------------------------------
def _claims(cache: LabelCache, owner: str, ttl_ms: int = 60_000) -> ImageClaims:
    return ImageClaims(cache, model_name="m", model_version="v1", ttl_ms=ttl_ms, owner=owner)


def test_an_image_claimed_elsewhere_is_awaited_until_its_result_is_written(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> None:
        cache = new_cache()
        try:
            one, two = _claims(cache, "w1"), _claims(cache, "w2")
            assert await one.claim([A, B]) == (set(), {})
            assert await two.claim([A, B, C]) == ({A, B}, {})
            waiting = asyncio.ensure_future(two.wait_for([A, B]))
            await cache.put({A: RESULT})  # w1's result: the claim goes with it
            await one.release([B])  # w1 failed to decode B
            found, to_infer = await waiting
            assert found == {A: RESULT}
            assert to_infer == {B}
        finally:
            await cache.close()

    asyncio.run(run())


def test_a_result_written_after_the_lookup_comes_back_with_the_claim(
    new_cache: Callable[..., LabelCache],
) -> None:
    # w2 looked A up before w1 wrote its result; by w2's claim, w1 has written
    # the result and deleted its claim, so the claim alone is won again. The
    # claim's round trip reads the result too: A is not inferred twice.
    async def run() -> None:
        cache = new_cache()
        try:
            one, two, three = _claims(cache, "w1"), _claims(cache, "w2"), _claims(cache, "w3")
            assert await one.claim([A]) == (set(), {})
            assert await cache.get_images([A], "m", "v1") == [None]  # w2's lookup: a miss
            await cache.put({A: RESULT})
            assert await two.claim([A, B]) == (set(), {A: RESULT})
            # w2 won A's claim again and gave it up at once: it holds only B.
            assert await three.claim([A, B]) == ({B}, {A: RESULT})
            _, held = await cache.peek_claimed([A, B], "m", "v1")
            assert held == [False, True]
        finally:
            await cache.close()

    asyncio.run(run())


def test_a_claim_whose_holder_died_lapses_and_the_waiter_infers(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> None:
        cache = new_cache()
        try:
            dead, alive = _claims(cache, "dead", ttl_ms=50), _claims(cache, "alive", ttl_ms=50)
            assert await dead.claim([A]) == (set(), {})
            assert await alive.claim([A]) == ({A}, {})
            found, to_infer = await alive.wait_for([A])
            assert (found, to_infer) == ({}, {A})
        finally:
            await cache.close()

    asyncio.run(run())


def test_claims_off_or_redis_down_leave_every_image_to_this_worker(
    down_url: str, new_cache: Callable[..., LabelCache]
) -> None:
    async def run() -> None:
        cache = new_cache()
        down = new_cache(down_url)
        try:
            off = _claims(cache, "w1", ttl_ms=0)
            assert not off.enabled
            assert await off.claim([A]) == (set(), {})
            assert await _claims(cache, "w2").claim([A]) == (set(), {}), "off claimed nothing"
            blind = _claims(down, "w3")
            assert await blind.claim([B]) == (set(), {})
            assert await blind.wait_for([B, C]) == ({}, {B, C})
        finally:
            await cache.close()
            await down.close()

    asyncio.run(run())
