"""Disguised copies through the checker: found by embedding, accepted by verified features."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import cv2
import numpy as np

from inference.serving.duplicates import DuplicateRule
from inference.serving.fingerprint import Fingerprint, fingerprint
from inference.training.disguises import transform
from streams.worker.integrity import IntegrityChecker, IntegrityConfig, IntegrityView, Listing

PHOTOS = Path(__file__).resolve().parents[3] / "fixtures" / "tiny_dataset"
RULE_INLIERS = 15


def _print(data: bytes, emb: np.ndarray) -> Fingerprint:
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    return fingerprint(np.ascontiguousarray(rgb), emb)


def _listing(pid: str, seller: str, data: bytes, fp: Fingerprint) -> Listing:
    return Listing(pid, seller, hashlib.sha256(data).hexdigest(), "v1", fp, event_id=pid)


def test_border_crop_and_rotation_are_flagged_and_another_shot_is_not() -> None:
    milk = sorted((PHOTOS / "Oatly-Oat-Milk").glob("*.jpg"))
    original, other = milk[0].read_bytes(), milk[1].read_bytes()
    # Stand-ins for the model's embeddings: copies and the other shot all near the
    # original's (cosine about 0.95), so only the local features tell them apart.
    rng = np.random.default_rng(0)
    base = rng.standard_normal(64)
    near = [base + 0.3 * rng.standard_normal(64) for _ in range(4)]
    copies = {
        name: transform(original, name, random.Random(3))
        for name in ("border_white_20", "cropped_25", "rotated_8")
    }
    config = IntegrityConfig(rule=DuplicateRule(8, 0.8, RULE_INLIERS), verify_candidates=4)
    checker = IntegrityChecker(config)
    view_records: list[tuple[bytes | None, bytes | None]] = []

    async def run() -> None:
        first = await checker.check([_listing("a-1", "A", original, _print(original, base))])
        assert first[0].record is not None
        view_records.append(first[0].record)
        later = [
            _listing(f"b-{name}", "B", data, _print(data, e))
            for (name, data), e in zip(copies.items(), near, strict=False)
        ]
        later.append(_listing("c-other", "C", other, _print(other, near[3])))
        found = await checker.check(later)
        for item, got in zip(later[:3], found[:3], strict=True):
            dup = got.duplicate_of
            assert dup is not None, item.product_id
            assert (dup.product_id, dup.seller_id, dup.match) == ("a-1", "A", "near")
            assert dup.inliers is not None
            assert dup.inliers >= RULE_INLIERS
            assert dup.accepted_by in ("hash", "features")
        assert found[0].duplicate_of is not None
        assert found[0].duplicate_of.candidate == "hash", "the border is trimmed before hashing"
        assert found[1].duplicate_of is not None
        assert found[1].duplicate_of.candidate == "embedding"
        assert found[1].duplicate_of.accepted_by == "features"
        assert found[3].duplicate_of is None, "another photo of the same product"

    asyncio.run(run())
    # A worker that rebuilt its index from the record verifies the same way.
    view = IntegrityView()
    view.apply(view_records)
    fresh = IntegrityChecker(config, view)
    data = copies["rotated_8"]
    got = asyncio.run(fresh.check([_listing("b-rot", "B", data, _print(data, near[2]))]))
    assert got[0].duplicate_of is not None
    assert got[0].duplicate_of.product_id == "a-1"
