"""The committed bad-image corpus: every file is refused with its code, and never sinks a batch."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inference.samples import sample_images
from inference.serving.decode import ImageLimits, decode_image
from inference.serving.engine import Engine, Prediction
from inference.serving.errors import ImageError

CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "bad_images"


def _expected() -> list[dict[str, str]]:
    with (CORPUS / "expected.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


EXPECTED = _expected()


def test_corpus_is_complete() -> None:
    listed = {row["file"] for row in EXPECTED}
    present = {p.name for p in CORPUS.iterdir()} - {"expected.csv", "make_corpus.py"}
    assert listed == present
    codes = {row["code"] for row in EXPECTED}
    assert codes == {
        "image.empty",
        "image.unsupported_format",
        "image.truncated",
        "image.decode_failed",
        "image.too_large",
    }


@pytest.mark.parametrize("row", EXPECTED, ids=[row["file"] for row in EXPECTED])
def test_refused_with_its_code(row: dict[str, str]) -> None:
    data = (CORPUS / row["file"]).read_bytes()
    with pytest.raises(ImageError) as info:
        decode_image(data, ImageLimits(), min_side=256)
    assert info.value.code == row["code"]
    assert row["message_contains"] in info.value.message
    assert not info.value.retriable


def test_bad_images_are_per_item_errors_in_a_batch(engine: Engine) -> None:
    good = sample_images()[0].read_bytes()
    blobs = [good] + [(CORPUS / row["file"]).read_bytes() for row in EXPECTED] + [good]
    result = engine.predict_bytes(blobs, ImageLimits())
    assert len(result.items) == len(blobs)
    assert isinstance(result.items[0], Prediction)
    assert isinstance(result.items[-1], Prediction)
    assert result.items[0].labels == result.items[-1].labels
    for row, item in zip(EXPECTED, result.items[1:-1], strict=True):
        assert isinstance(item, ImageError), row["file"]
        assert item.code == row["code"]
    assert [i for i, _ in result.errors] == list(range(1, len(blobs) - 1))
