"""An image's cached result: from a prediction and back, to bytes and back, old entries."""

from __future__ import annotations

import json

import numpy as np

from inference.serving.engine import Prediction
from streams.worker.imageresult import ImageResult, decode_image_result, encode_image_result

PREDICTION = Prediction(
    labels=(("Banana", 0.912345678), ("Lemon", 0.05)),
    category="produce",
    score=0.9634567891,
    model_name="grocery-store",
    model_version="v3",
    flags=("low_contrast",),
    embedding=np.ones(4, np.float32),
    ood_score=12.3456789,
)


def test_a_prediction_round_trips_through_the_cache_form() -> None:
    result = ImageResult.of(PREDICTION, vector="AAA=")
    assert result.labels == (("Banana", 0.912346), ("Lemon", 0.05))
    assert (result.score, result.ood_score, result.vector) == (0.963457, 12.345679, "AAA=")
    assert result.label == "Banana"
    again = decode_image_result(encode_image_result(result))
    assert again == result
    back = again.prediction()
    assert back.embedding is None  # never cached
    assert (back.labels, back.category, back.flags) == (result.labels, "produce", ("low_contrast",))
    assert (back.model_name, back.model_version, back.score) == ("grocery-store", "v3", 0.963457)


def test_an_entry_cached_as_a_plain_dict_by_an_earlier_worker_still_decodes() -> None:
    old = {
        "labels": [["Banana", 0.9], ["Lemon", 0.1]],
        "category": "produce",
        "score": 0.95,
        "flags": [],
        "model_name": "grocery-store",
        "model_version": "v3",
        "vector": "AAA=",
    }
    got = decode_image_result(json.dumps(old).encode())
    assert got == ImageResult(
        labels=(("Banana", 0.9), ("Lemon", 0.1)),
        category="produce",
        score=0.95,
        model_name="grocery-store",
        model_version="v3",
        vector="AAA=",
    )


def test_what_an_earlier_worker_reads_by_key_is_still_there() -> None:
    raw = json.loads(encode_image_result(ImageResult.of(PREDICTION)))
    assert raw["labels"][0] == ["Banana", 0.912346]  # [label, score] pairs, as before
    for key in ("category", "score", "flags", "model_name", "model_version"):
        assert key in raw
    assert raw.get("vector") is None


def test_anything_else_is_not_a_result() -> None:
    for raw in (b"", b"{not json", b'{"category": "produce"}', b"[1, 2]", b'"text"'):
        assert decode_image_result(raw) is None
