"""The worker's search index: records in, neighbours out; bad, foreign and deleted records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inference.serving.search import l2_normalise
from streams.worker.imageresult import ImageResult
from streams.worker.search import SearchIndex, embedding_record, vector_b64

VERSION = "v1"


def record(product_id: str, vector: np.ndarray, category: str = "produce", **kw: str) -> bytes:
    result = ImageResult(
        vector=vector_b64(vector),
        category=category,
        labels=(("Lemon", 0.9), ("Lime", 0.1)),
        score=1.0,
        model_name="m",
        model_version=kw.get("version", VERSION),
    )
    value = embedding_record(
        event_id=f"e-{product_id}",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        product_id=product_id,
        image_sha256="ab" * 32,
        result=result,
    )
    assert value is not None
    return value


def vectors(n: int, dims: int = 16) -> np.ndarray:
    return l2_normalise(np.random.default_rng(5).standard_normal((n, dims)))


def test_nearest_first_with_category_filter_and_self_excluded() -> None:
    v = vectors(6)
    index = SearchIndex(16, VERSION)
    cats = ["produce", "dairy"] * 3
    index.apply((f"p{i}".encode(), record(f"p{i}", v[i], cats[i])) for i in range(6))
    assert len(index) == 6
    hits = index.similar(v[2], 3)
    assert hits[0].product_id == "p2"
    assert hits[0].score > 0.99
    assert hits[0].label == "Lemon"
    others = index.similar(v[2], 3, exclude="p2")
    assert len(others) == 3
    assert "p2" not in {h.product_id for h in others}
    dairy = index.similar(v[2], 10, category="dairy")
    assert {h.product_id for h in dairy} == {"p1", "p3", "p5"}
    vec = index.vector_of("p4")
    assert vec is not None
    np.testing.assert_allclose(vec, v[4], atol=2e-3)


def test_update_tombstone_invalid_and_other_model() -> None:
    v = vectors(3)
    index = SearchIndex(16, VERSION)
    index.apply([(b"a", record("a", v[0])), (b"b", record("b", v[1]))])
    # A newer record of "a" replaces its vector; a null value deletes "b".
    index.apply([(b"a", record("a", v[2])), (b"b", None)])
    assert len(index) == 1
    assert index.similar(v[2], 1)[0].product_id == "a"
    assert index.meta("b") is None
    # Garbage and descriptors of another model version are skipped, not raised.
    index.apply([(b"c", b"{not json"), (b"d", record("d", v[1], version="v0"))])
    assert len(index) == 1
    wrong_dims = SearchIndex(8, VERSION)
    wrong_dims.apply([(b"a", record("a", v[0]))])
    assert len(wrong_dims) == 0


def test_no_vector_no_record() -> None:
    assert (
        embedding_record(
            event_id="e",
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
            product_id="p",
            image_sha256="ab" * 32,
            result=ImageResult(
                labels=(("Lemon", 1.0),),
                category="produce",
                score=1.0,
                model_name="m",
                model_version=VERSION,
            ),
        )
        is None
    )


def test_snapshot_round_trip_and_refusals(tmp_path: Path) -> None:
    v = vectors(5)
    index = SearchIndex(16, VERSION)
    index.apply((f"p{i}".encode(), record(f"p{i}", v[i], "dairy")) for i in range(5))
    snap = tmp_path / "snap"
    index.save(snap, topic="t", positions={0: 3, 1: 2})
    index.save(snap, topic="t", positions={0: 4, 1: 2})  # replaces the previous one
    again = SearchIndex(16, VERSION)
    assert again.load(snap, topic="t") == {0: 4, 1: 2}
    assert len(again) == 5
    assert [h.product_id for h in again.similar(v[3], 5)] == [
        h.product_id for h in index.similar(v[3], 5)
    ]
    assert again.similar(v[3], 1)[0].category == "dairy"
    # Another topic, another model, no snapshot, a broken one: not used.
    assert SearchIndex(16, VERSION).load(snap, topic="other") is None
    assert SearchIndex(16, "v2").load(snap, topic="t") is None
    assert SearchIndex(16, VERSION).load(tmp_path / "none", topic="t") is None
    (snap / "state.json").write_text("{")
    broken = SearchIndex(16, VERSION)
    assert broken.load(snap, topic="t") is None
    assert len(broken) == 0
