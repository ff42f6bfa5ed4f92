"""``vitrine bench verify``: what catching disguised copies adds to a photo's cost.

In one run, on the sample photos (one batch of at most 32), with the worker's engine
(from the settings): the model stage as it was (decode, inference, hashes:
:func:`predict_with_fingerprints` without local features), the same with the
local features, and the duplicate checks of a copy cropped by 25% against an
index of the photos (band lookup, embedding neighbours, local features
matched: :class:`IntegrityChecker`). Reports milliseconds a photo (the best of
rounds that take turns, so that the load of a shared machine hits both alike)
and the ratios of what is added to the model stage as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

from inference.samples import sample_images
from inference.serving.engine import predict_with_fingerprints
from inference.serving.fingerprint import Fingerprint
from inference.training.disguises import transform
from streams.settings import get_settings
from streams.worker.integrity import IntegrityChecker, IntegrityConfig, Listing
from streams.worker.model import build_engine, image_limits

__all__ = ["bench_verify_command"]

_BATCH = 32


def _per_photo_ms(
    fns: dict[str, Callable[[], Any]], photos: int, min_seconds: float
) -> dict[str, float]:
    """Each function's best time a photo, in ms, taking turns so that load hits them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm up
    deadline = time.perf_counter() + min_seconds * len(fns)
    while time.perf_counter() < deadline:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / photos)
    return best


def bench_verify(min_seconds: float = 5.0) -> dict[str, Any]:
    """The per-photo costs, in milliseconds, and their ratios."""
    settings = get_settings()
    engine = build_engine(settings)
    limits = image_limits(settings)
    blobs = [p.read_bytes() for p in sample_images()][:_BATCH]
    rng = random.Random(0)
    copies = [transform(b, "cropped_25", rng) for b in blobs]

    def stage(with_features: bool, data: list[bytes]) -> list[Fingerprint | None]:
        return predict_with_fingerprints(engine, data, limits, with_features=with_features)[1]

    timed = _per_photo_ms(
        {"base": lambda: stage(False, blobs), "features": lambda: stage(True, blobs)},
        len(blobs),
        min_seconds,
    )
    base, features = timed["base"], timed["features"]
    originals, copied = stage(True, blobs), stage(True, copies)
    config = IntegrityConfig.from_settings(settings)

    def checks() -> None:
        checker = IntegrityChecker(config)
        listed = [
            Listing(f"a{i}", "A", hashlib.sha256(b).hexdigest(), engine.model_version, fp)
            for i, (b, fp) in enumerate(zip(blobs, originals, strict=True))
        ]
        asyncio.run(checker.check(listed))
        start = time.perf_counter()
        later = [
            Listing(f"b{i}", "B", hashlib.sha256(b).hexdigest(), engine.model_version, fp)
            for i, (b, fp) in enumerate(zip(copies, copied, strict=True))
        ]
        found = asyncio.run(checker.check(later))
        times.append(time.perf_counter() - start)
        caught.append(sum(c.duplicate_of is not None for c in found))

    times: list[float] = []
    caught: list[int] = []
    deadline = time.perf_counter() + min_seconds
    while time.perf_counter() < deadline or not times:
        checks()
    check_ms = 1000 * min(times) / len(copies)
    engine.close()
    added = features - base + check_ms
    return {
        "photos": len(blobs),
        "model_stage_ms": round(base, 3),
        "model_stage_with_features_ms": round(features, 3),
        "checks_of_a_cropped_copy_ms": round(check_ms, 3),
        "copies_caught": caught[-1],
        "min_inliers": config.rule.min_inliers,
        "verify_candidates": config.verify_candidates,
        "added_over_model_stage": round(added / base, 3),
        "features_over_model_stage": round((features - base) / base, 3),
    }


def bench_verify_command(*, as_json: bool) -> int:
    """Print the report; exit status."""
    report = bench_verify()
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        print(f"{key:>32}: {value}")
    return 0
