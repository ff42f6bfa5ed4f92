"""The duplicate evaluation's copies, its scores and its refusal of the test split."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.serving.duplicates import DuplicateRule
from inference.serving.fingerprint import fingerprint
from inference.training.disguises import FAMILIES, TRANSFORMS, transform
from inference.training.duplicates_eval import (
    SplitPrints,
    choose_rule,
    fingerprint_split,
    score,
    split_signals,
)

PHOTOS = Path(__file__).resolve().parents[3] / "fixtures" / "tiny_dataset"


def _rgb(data: bytes) -> np.ndarray:
    return np.ascontiguousarray(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    )


def _prints() -> SplitPrints:
    """Three photos of one product and two of another, and every copy of each.

    Embeddings stand in for the model's: a photo's copies share its own.
    """
    paths = [
        *sorted((PHOTOS / "Oatly-Oat-Milk").glob("*.jpg"))[:3],
        *sorted((PHOTOS / "Banana").glob("*.jpg"))[:2],
    ]
    rng = random.Random(0)
    blobs = [p.read_bytes() for p in paths]
    embs = np.eye(len(blobs), 8, dtype=np.float32)
    originals = [fingerprint(_rgb(b), e) for b, e in zip(blobs, embs, strict=True)]
    copies = {
        t: [fingerprint(_rgb(transform(b, t, rng)), e) for b, e in zip(blobs, embs, strict=True)]
        for t in TRANSFORMS
    }
    return SplitPrints("val", [0, 0, 0, 1, 1], originals, copies, 0.0)


def test_disguised_copies_need_the_verification_and_other_photos_stay_apart() -> None:
    sig = split_signals(_prints())
    hash_only = score(sig, DuplicateRule(8, 0.8, 0, 0))
    assert hash_only["negative_pairs"] == 8, "ordered pairs of different photos of one product"
    assert hash_only["all_pairs"] == 20
    assert {FAMILIES[t] for t in TRANSFORMS} >= {"plain", "border", "crop", "rotation"}
    assert hash_only["families"]["plain"] >= 0.75
    assert hash_only["detection"]["rotated_8"] < 1.0
    # The border is trimmed before hashing: the hash alone catches it.
    assert hash_only["detection"]["border_white_20"] == 1.0
    verified = score(sig, DuplicateRule(8, 0.8, 15))
    for name in ("cropped_25", "cropped_30", "rotated_8", "crop_20_rotated_5"):
        assert verified["detection"][name] == 1.0, name
    assert verified["detected_by"]["cropped_25"] == {"hash": 0, "verified": 5}
    assert verified["false_positives"] == 0
    assert verified["false_positives_all"] == 0
    rule, grid = choose_rule(sig, 0.01)
    assert len(grid) > 100
    assert rule.min_inliers > 0
    assert score(sig, rule)["families"]["crop"] == 1.0


def test_every_transform_makes_a_decodable_copy() -> None:
    data = next((PHOTOS / "Banana").glob("*.jpg")).read_bytes()
    h, w = _rgb(data).shape[:2]
    rng = random.Random(1)
    for name in TRANSFORMS:
        assert _rgb(transform(data, name, rng)).ndim == 3, name
    assert _rgb(transform(data, "resized_70", rng)).shape[:2] == (int(h * 0.7), int(w * 0.7))
    assert _rgb(transform(data, "border_white_20", rng)).shape[0] > h
    with pytest.raises(ValueError, match="unknown transform"):
        transform(data, "rotated", rng)


def test_the_test_split_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "test.txt"
    listing.write_text("x.jpg, 0, 0\n")
    with pytest.raises(ValueError, match="held-back test split"):
        fingerprint_split(None, listing, limit=None, seed=0)  # type: ignore[arg-type]
