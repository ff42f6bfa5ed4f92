"""Labelling batches on a real Redis with a scripted model: results, hits, flags, failures."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import msgspec

from inference.serving.decode import ImageLimits
from inference.serving.engine import BatchResult, Engine, Prediction, StageTimings
from inference.serving.errors import ImageError, InferenceError
from schemas import codec
from streams.tools.demo import make_listing
from streams.worker.cache import LabelCache
from streams.worker.consumed import ConsumedRecord
from streams.worker.corrections import CorrectionsView
from streams.worker.fetch import FetchPolicy
from streams.worker.imageresult import ImageResult
from streams.worker.labelling import ImageLabeller, Labelled, Rejected
from tests.unit.streams.worker.test_corrections import correction

#: What the scripted model says of each image's bytes.
SAYS = {
    b"banana": Prediction((("Banana", 0.96), ("Lemon", 0.02)), "produce", 0.98, "m", "v1"),
    b"blur": Prediction(
        (("Kiwi", 0.3), ("Lime", 0.2)), "produce", 0.5, "m", "v1", flags=("low_confidence",)
    ),
}


BANANA_SHA = hashlib.sha256(b"banana").hexdigest()


class ScriptedEngine:
    """The engine's batch interface, answering from :data:`SAYS`; counts what it infers."""

    model_name, model_version = "m", "v1"

    def __init__(self) -> None:
        self.inferred: list[bytes] = []

    def decode_all(self, blobs: Sequence[bytes], limits: ImageLimits) -> list[Any]:
        self.inferred.extend(blobs)
        return [
            b if b in SAYS else ImageError("image.decode_failed", "not an image") for b in blobs
        ]

    def predict_decoded(
        self, images: Sequence[Any], *, with_embedding: bool = False
    ) -> BatchResult:
        items = [i if isinstance(i, InferenceError) else SAYS[i] for i in images]
        return BatchResult(items=items, timings=StageTimings())

    def map_streams(self, work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return [work(i) for i in items]


def _record(
    product_id: str, image: bytes, offset: int, declared: str | None = None, seller: str = "s1"
) -> ConsumedRecord:
    ev = make_listing(product_id, image=image, seller_id=seller)
    ev = msgspec.structs.replace(ev, declared_category=declared)
    return ConsumedRecord(product_id.encode(), codec.encode(ev), "product-images", 0, offset, 0)


def _run(
    new_cache: Callable[..., LabelCache],
    batches: list[list[ConsumedRecord]],
    corrections: CorrectionsView | None = None,
    cached: list[ImageResult | None] | None = None,
) -> tuple[list[list[Labelled | Rejected]], ScriptedEngine]:
    engine = ScriptedEngine()

    async def run() -> list[list[Labelled | Rejected]]:
        cache = new_cache()
        with ThreadPoolExecutor(max_workers=1) as executor:
            lab = ImageLabeller(
                cast(Engine, engine),
                cache,
                executor,
                limits=ImageLimits(),
                fetch_policy=FetchPolicy(),
                claim_ttl_ms=10_000,
                corrections=corrections,
            )
            outs = []
            try:
                for batch in batches:
                    out = await lab.check_integrity(await lab.process(batch))
                    await lab.remember(out)
                    outs.append(out)
                assert lab.inflight == 0, "nothing held once Redis has the results"
                if cached is not None:
                    cached.extend(await cache.get_images([BANANA_SHA], "m", "v1"))
            finally:
                await lab.close()
                await cache.close()
            return outs

    return asyncio.run(run()), engine


def test_an_image_is_inferred_once_and_then_labelled_from_the_cache(
    new_cache: Callable[..., LabelCache],
) -> None:
    (first, second), engine = _run(
        new_cache,
        [
            [_record("p1", b"banana", 0), _record("p2", b"banana", 1)],
            [_record("p3", b"banana", 2)],
        ],
    )
    assert engine.inferred == [b"banana"]
    labelled = [r for r in (*first, *second) if isinstance(r, Labelled)]
    assert [r.cached for r in labelled] == [False, False, True]
    out = [codec.decode_product_labelled(r.value) for r in labelled]
    assert {o.labels[0].label for o in out} == {"Banana"}
    assert out[2].category == "produce"
    assert out[2].category_score == 0.98
    assert out[2].timings.inference_ms == 0
    assert labelled[0].image_result is not None
    assert labelled[0].image_result.prediction().labels == SAYS[b"banana"].labels
    assert labelled[2].image_result is None, "a hit is not written again"


def test_review_and_category_mismatch_flags(new_cache: Callable[..., LabelCache]) -> None:
    ((blurred, mislabelled, agreed),), _ = _run(
        new_cache,
        [
            [
                _record("p1", b"blur", 0, declared="dairy"),
                _record("p2", b"banana", 1, declared="Dairy"),
                _record("p3", b"banana", 2, declared="PRODUCE"),
            ]
        ],
    )
    assert isinstance(blurred, Labelled)
    assert isinstance(mislabelled, Labelled)
    assert isinstance(agreed, Labelled)
    # Too unsure to call a mismatch; sent to review instead.
    assert blurred.review
    assert not blurred.listing_review
    assert mislabelled.output is not None
    assert "category_mismatch" in mislabelled.output.flags
    assert mislabelled.listing_review
    assert not mislabelled.review
    assert not agreed.listing_review


def test_an_image_that_fails_is_dead_lettered_and_never_cached(
    new_cache: Callable[..., LabelCache],
) -> None:
    (first, second), engine = _run(
        new_cache, [[_record("p1", b"junk", 0)], [_record("p2", b"junk", 1)]]
    )
    for (out,) in (first, second):
        assert isinstance(out, Rejected)
        assert out.code == "image.decode_failed"
    assert engine.inferred == [b"junk", b"junk"], "tried again: a failure is not cached"


def test_another_sellers_copy_is_flagged_with_its_evidence(
    new_cache: Callable[..., LabelCache],
) -> None:
    ((original, copy, relisted),), _ = _run(
        new_cache,
        [
            [
                _record("p1", b"banana", 0, seller="s1"),
                _record("p2", b"banana", 1, seller="s2"),
                _record("p3", b"banana", 2, seller="s1"),
            ]
        ],
    )
    assert isinstance(original, Labelled)
    assert isinstance(copy, Labelled)
    assert isinstance(relisted, Labelled)
    value = codec.decode_product_labelled(copy.value)  # the produced value carries it too
    assert "duplicate_image" in value.flags
    assert copy.listing_review
    assert value.duplicate_of is not None
    assert (value.duplicate_of.product_id, value.duplicate_of.match) == ("p1", "exact")
    assert not original.listing_review, "the first seller's own"
    assert not relisted.listing_review, "the first seller's own"
    # One listing-fingerprints record per new (photo, seller).
    assert [r.integrity_record is not None for r in (original, copy, relisted)] == [
        True,
        True,
        False,
    ]


def test_a_photo_a_reviewer_corrected_is_labelled_as_the_reviewer_said(
    new_cache: Callable[..., LabelCache],
) -> None:
    corrections = CorrectionsView()
    relabel = correction(product_id="p1", image_sha256=BANANA_SHA, label="Plantain")
    corrections.apply([(b"p1", codec.encode(relabel))])
    cached: list[ImageResult | None] = []
    (first, second), engine = _run(
        new_cache,
        [[_record("p2", b"banana", 0)], [_record("p3", b"banana", 1), _record("p4", b"blur", 2)]],
        corrections,
        cached,
    )
    assert engine.inferred == [b"banana", b"blur"], "inferred once, then a cache hit"
    (new,), (hit, other) = first, second
    assert isinstance(new, Labelled)
    assert isinstance(hit, Labelled)
    for res in (new, hit):
        out = codec.decode_product_labelled(res.value)
        assert (out.labels[0].label, out.category, out.category_score) == ("Plantain", "produce", 1)
        assert (out.corrected_by, out.correction_id) == ("rev-1", relabel.event_id)
        assert not res.review
    # The cache keeps the model's result: the correction is applied over it.
    assert new.image_result is not None
    assert new.image_result.corrected_by is None
    assert [c.label if c else None for c in cached] == ["Banana"]
    assert isinstance(other, Labelled)
    assert codec.decode_product_labelled(other.value).corrected_by is None
