"""The duplicate evaluation's copies, its scores and its refusal of the test split."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.serving.duplicates import DuplicateRule
from inference.serving.fingerprint import fingerprint
from inference.training.duplicates_eval import (
    TRANSFORMS,
    SplitPrints,
    choose_rule,
    fingerprint_split,
    score,
    transform,
)

PHOTOS = Path(__file__).resolve().parents[3] / "fixtures" / "tiny_dataset"


def _rgb(data: bytes) -> np.ndarray:
    return np.ascontiguousarray(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    )


def test_copies_and_scores_on_real_photos() -> None:
    paths = sorted((PHOTOS / "Oatly-Oat-Milk").glob("*.jpg"))[:3]
    rng = random.Random(0)
    blobs = [p.read_bytes() for p in paths]
    originals = [fingerprint(_rgb(b)) for b in blobs]
    copies = {t: [fingerprint(_rgb(transform(b, t, rng))) for b in blobs] for t in TRANSFORMS}
    h, w = _rgb(blobs[0]).shape[:2]
    assert _rgb(transform(blobs[0], "resized_70", rng)).shape[:2] == (int(h * 0.7), int(w * 0.7))
    prints = SplitPrints("val", [0, 0, 0], originals, copies, 0.0)
    res = score(prints, DuplicateRule(8, 0.8))
    assert res["negative_pairs"] == 6, "ordered pairs of different photos of one product"
    assert res["detection_overall"] == 1.0
    assert res["false_positives"] == 0
    nothing = score(prints, DuplicateRule(0, 0.8))
    assert nothing["detection"]["cropped_10"] < 1.0
    rule, grid = choose_rule(prints, 0.01)
    assert len(grid) > 10
    assert score(prints, rule)["detection_overall"] == 1.0
    with pytest.raises(ValueError, match="unknown transform"):
        transform(blobs[0], "rotated", rng)


def test_the_test_split_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "test.txt"
    listing.write_text("x.jpg, 0, 0\n")
    with pytest.raises(ValueError, match="held-back test split"):
        fingerprint_split(None, listing, limit=None, seed=0)  # type: ignore[arg-type]
