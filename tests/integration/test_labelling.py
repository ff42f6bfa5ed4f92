"""ImageLabeller in one process: batches in flight at once share an image's inference.

A real CPU engine and the stack's real Redis; the engine is wrapped only to
count (and once, to fail) its calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import pytest
from prometheus_client import REGISTRY

from inference.serving.decode import DecodedImage, ImageLimits
from inference.serving.engine import BatchResult, Engine
from inference.serving.errors import InferenceError
from inference.serving.manifest import ModelManifest, default_model_dir
from schemas import codec
from streams.worker.cache import LabelCache
from streams.worker.consumed import ConsumedRecord
from streams.worker.fetch import FetchPolicy
from streams.worker.imageresult import ImageResult
from streams.worker.labelling import ImageLabeller, Labelled, Rejected
from tests.conftest import LocalStack
from tests.events import listing, photo_bytes

pytestmark = pytest.mark.integration

T = TypeVar("T")
LIMITS = ImageLimits(max_bytes=8 << 20, max_pixels=40_000_000)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(
        ModelManifest.load(default_model_dir()), providers=("cpu",), intra_op_threads=2, top_k=5
    )


class CountingEngine:
    """The real engine, counting the images it is asked to infer.

    Each call waits for ``gate`` first, so a test can hold an inference in
    flight; with ``fail_first`` the first call then raises instead.
    """

    def __init__(self, engine: Engine, *, fail_first: bool = False) -> None:
        self.engine = engine
        self.model_name = engine.model_name
        self.model_version = engine.model_version
        self.inferred: list[bytes] = []
        self.fail_first = fail_first
        self.calls = 0
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def decode_all(
        self, blobs: Sequence[bytes], limits: ImageLimits
    ) -> list[DecodedImage | InferenceError]:
        # The labeller decodes (and fingerprints) the images it infers, then
        # classifies them: each decode_all call is one inference call.
        with self._lock:
            self.calls += 1
            fail = self.fail_first and self.calls == 1
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        if fail:
            raise RuntimeError("injected: the first inference call fails")
        self.inferred.extend(blobs)
        return self.engine.decode_all(blobs, limits)

    def predict_decoded(
        self, images: Sequence[DecodedImage | InferenceError], *, with_embedding: bool = False
    ) -> BatchResult:
        return self.engine.predict_decoded(images, with_embedding=with_embedding)

    def map_streams(self, work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return self.engine.map_streams(work, items)


@pytest.fixture
def labeller_for(kafka_stack: LocalStack) -> Iterator[Any]:
    executors: list[ThreadPoolExecutor] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def make(counting: CountingEngine, claim_ttl_ms: int = 0) -> ImageLabeller:
        # Two threads: two batches' inferences could run at the same time.
        executor = ThreadPoolExecutor(max_workers=2)
        executors.append(executor)
        cache = LabelCache(kafka_stack.redis_url, ttl_s=600, timeout_ms=2000, prefix=prefix)
        return ImageLabeller(
            cast(Engine, counting),
            cache,
            executor,
            limits=LIMITS,
            fetch_policy=FetchPolicy(),
            claim_ttl_ms=claim_ttl_ms,
        )

    yield make
    for executor in executors:
        executor.shutdown()


async def closing(lab: ImageLabeller, work: Awaitable[T]) -> T:
    """Run ``work``, then close the labeller's clients on the same event loop."""
    try:
        return await work
    finally:
        await lab.close()
        await lab.cache.close()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.005)


def shared_so_far() -> float:
    return REGISTRY.get_sample_value("vitrine_inference_shared_total") or 0.0


async def overlapped(
    lab: ImageLabeller, counting: CountingEngine, first: ConsumedRecord, second: ConsumedRecord
) -> list[Any]:
    """Batch ``[first]`` starts inferring; ``[second]`` starts and finds it in flight; then go.

    Returns both outcomes (a result list, or what the batch raised).
    """
    before = shared_so_far()
    one = asyncio.ensure_future(lab.process([first]))
    try:
        await until(lambda: counting.calls >= 1, "the first batch infers")
        two = asyncio.ensure_future(lab.process([second]))
        await until(lambda: shared_so_far() > before, "the second batch waits for it")
    finally:
        counting.gate.set()
    return await asyncio.gather(one, two, return_exceptions=True)


def record(product_id: str, image: bytes, offset: int) -> ConsumedRecord:
    key, value = listing(product_id, image, event_id=f"e-{product_id}")
    return ConsumedRecord(key, value, "product-images", 0, offset, 0)


def labelled(results: Sequence[Labelled | Rejected] | BaseException) -> Labelled:
    assert not isinstance(results, BaseException), results
    (res,) = results
    assert isinstance(res, Labelled), res
    return res


def fresh_image() -> bytes:
    """A real photo with bytes (so a hash) no earlier test or run has seen."""
    return photo_bytes()[0][1] + uuid.uuid4().bytes


def test_two_batches_in_flight_infer_a_shared_image_once(labeller_for: Any, engine: Engine) -> None:
    counting = CountingEngine(engine)
    lab: ImageLabeller = labeller_for(counting)
    image = fresh_image()

    async def run() -> tuple[Labelled, Labelled, ImageResult | None]:
        first, second = await overlapped(
            lab, counting, record("a", image, 0), record("b", image, 1)
        )
        await lab.remember(first)
        await lab.remember(second)
        a = labelled(first)
        (stored,) = await lab.cache.get_images(
            [a.image_sha256], engine.model_name, engine.model_version
        )
        return a, labelled(second), stored

    a, b, stored = asyncio.run(closing(lab, run()))
    assert counting.inferred == [image]
    assert (a.cached, b.cached) == (False, True)
    la, lb = codec.decode_product_labelled(a.value), codec.decode_product_labelled(b.value)
    assert la.labels == lb.labels
    assert la.timings.inference_ms > 0
    assert lb.timings.inference_ms == 0
    assert b.image_result is None, "the batch that inferred it writes it"
    assert stored is not None
    assert stored == a.image_result
    assert lab.inflight == 0, "nothing held in memory once Redis has it"


def test_a_batch_after_the_inference_but_before_its_write_takes_the_result(
    labeller_for: Any, engine: Engine
) -> None:
    counting = CountingEngine(engine)
    lab: ImageLabeller = labeller_for(counting)
    image = fresh_image()
    counting.gate.set()

    async def run() -> tuple[Labelled, Labelled, int]:
        first = await lab.process([record("a", image, 0)])
        held = lab.inflight  # inferred, not yet in Redis
        second = await lab.process([record("b", image, 1)])
        await lab.remember(first)
        await lab.remember(second)
        return labelled(first), labelled(second), held

    a, b, held = asyncio.run(closing(lab, run()))
    assert held == 1
    assert counting.inferred == [image]
    assert (a.cached, b.cached) == (False, True)
    assert lab.inflight == 0


def test_when_the_inferring_batch_fails_the_waiting_one_infers_itself(
    labeller_for: Any, engine: Engine
) -> None:
    counting = CountingEngine(engine, fail_first=True)
    lab: ImageLabeller = labeller_for(counting)
    image = fresh_image()

    async def run() -> list[Any]:
        first, second = await overlapped(
            lab, counting, record("a", image, 0), record("b", image, 1)
        )
        if not isinstance(second, BaseException):
            await lab.remember(second)
        return [first, second]

    first, second = asyncio.run(closing(lab, run()))
    assert isinstance(first, RuntimeError), first
    assert labelled(second).cached is False
    assert counting.calls == 2
    assert counting.inferred == [image]
    assert lab.inflight == 0


def test_a_bad_image_shared_by_two_batches_is_rejected_in_both(
    labeller_for: Any, engine: Engine
) -> None:
    counting = CountingEngine(engine)
    lab: ImageLabeller = labeller_for(counting)
    broken = photo_bytes()[0][1][:600] + uuid.uuid4().bytes  # a truncated JPEG

    first, second = asyncio.run(
        closing(lab, overlapped(lab, counting, record("a", broken, 0), record("b", broken, 1)))
    )
    rejected = [r for r in first + second if isinstance(r, Rejected)]
    assert len(rejected) == 2
    assert counting.inferred == [broken], "the second waits for the first's verdict"
    (direct,) = engine.predict_bytes([broken], LIMITS).items
    assert isinstance(direct, InferenceError)
    assert [r.code for r in rejected] == [direct.code, direct.code]
    assert lab.inflight == 0


def claimed_elsewhere_so_far() -> float:
    return REGISTRY.get_sample_value("vitrine_inference_claimed_elsewhere_total") or 0.0


def test_two_workers_claim_an_image_and_only_one_infers_it(
    labeller_for: Any, engine: Engine
) -> None:
    # Two labellers with their own caches and executors: two worker processes' worth.
    one, two = CountingEngine(engine), CountingEngine(engine)
    a_lab: ImageLabeller = labeller_for(one, claim_ttl_ms=5000)
    b_lab: ImageLabeller = labeller_for(two, claim_ttl_ms=5000)
    image = fresh_image()
    two.gate.set()

    async def run() -> tuple[Labelled, Labelled]:
        before = claimed_elsewhere_so_far()
        first = asyncio.ensure_future(a_lab.process([record("a", image, 0)]))
        await until(lambda: one.calls >= 1, "the first worker infers")
        second = asyncio.ensure_future(b_lab.process([record("b", image, 0)]))
        await asyncio.sleep(0.3)  # the second has claimed nothing and is waiting
        assert not second.done()
        one.gate.set()
        a = await first
        await a_lab.remember(a)  # the result lands in Redis: the second takes it
        b = await second
        assert claimed_elsewhere_so_far() == before + 1
        await b_lab.remember(b)
        await b_lab.close()
        await b_lab.cache.close()
        return labelled(a), labelled(b)

    a, b = asyncio.run(closing(a_lab, run()))
    assert one.inferred == [image]
    assert two.inferred == []
    assert (a.cached, b.cached) == (False, True)
    la, lb = codec.decode_product_labelled(a.value), codec.decode_product_labelled(b.value)
    assert la.labels == lb.labels


def test_a_claim_whose_holder_died_lapses_and_the_waiter_infers(
    labeller_for: Any, engine: Engine
) -> None:
    counting = CountingEngine(engine)
    lab: ImageLabeller = labeller_for(counting, claim_ttl_ms=5000)
    image = fresh_image()
    counting.gate.set()
    sha = hashlib.sha256(image).hexdigest()

    async def run() -> tuple[Labelled, float]:
        # A worker claimed the image for 400 ms, then died without a result.
        won, _ = await lab.cache.claim_images(
            [sha], "worker-dead", engine.model_name, engine.model_version, 400
        )
        assert won == [True]
        started = time.monotonic()
        res = await lab.process([record("a", image, 0)])
        return labelled(res), time.monotonic() - started

    res, took = asyncio.run(closing(lab, run()))
    assert counting.inferred == [image]
    assert res.cached is False
    assert 0.3 < took < 5.0, took


def test_a_failed_image_releases_its_claim_at_once(labeller_for: Any, engine: Engine) -> None:
    one, two = CountingEngine(engine), CountingEngine(engine)
    a_lab: ImageLabeller = labeller_for(one, claim_ttl_ms=60_000)
    b_lab: ImageLabeller = labeller_for(two, claim_ttl_ms=60_000)
    broken = photo_bytes()[0][1][:600] + uuid.uuid4().bytes  # a truncated JPEG
    two.gate.set()

    async def run() -> tuple[list[Any], list[Any], float]:
        first = asyncio.ensure_future(a_lab.process([record("a", broken, 0)]))
        await until(lambda: one.calls >= 1, "the first worker infers")
        second = asyncio.ensure_future(b_lab.process([record("b", broken, 0)]))
        await asyncio.sleep(0.2)
        one.gate.set()
        started = time.monotonic()
        got = await asyncio.gather(first, second)
        await b_lab.close()
        await b_lab.cache.close()
        return got[0], got[1], time.monotonic() - started

    a, b, took = asyncio.run(closing(a_lab, run()))
    assert isinstance(a[0], Rejected)
    assert isinstance(b[0], Rejected)
    assert b[0].code == a[0].code
    assert took < 5.0, "the waiter did not sit out the 60 s claim"
