"""``vitrine evaluate-duplicates``: how well the near-duplicate rule finds copies, and its errors.

For every photo of a labelled split, the copies another seller would upload
are made (JPEG quality 60, resized to 70%, cropped by 10% at a random place,
mirrored), and the worker's own code decides (:func:`predict_with_fingerprints`,
:func:`found_by_bands`, :class:`DuplicateRule`): a copy is detected when the band
lookup reaches the original and the rule accepts it. False positives are
counted over ordered pairs of *different* photos of the same fine class (the
hardest negatives a catalogue has: the same packaging, same shelf, another
shot). Thresholds are fitted on one split (val) and checked on another
(train); the held-back test split is refused.

The originals' predictions also measure ``category_mismatch``: how many photos
would be flagged although the seller declared their true category (the
model's category of their class), and how many are predicted confidently
enough to be checked at all.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.serving.decode import ImageLimits
from inference.serving.duplicates import DuplicateRule, found_by_bands
from inference.serving.engine import Engine, Prediction, predict_with_fingerprints
from inference.serving.fingerprint import Fingerprint
from inference.serving.taxonomy import category_mismatch
from inference.training.dataset import load_dataset

__all__ = [
    "TRANSFORMS",
    "SplitPrints",
    "category_scores",
    "choose_rule",
    "fingerprint_split",
    "score",
    "signal_stats",
    "transform",
]

logger = logging.getLogger(__name__)

TRANSFORMS = ("jpeg_q60", "resized_70", "cropped_10", "mirrored")
_HAMMING_GRID = tuple(range(2, 17, 2))
_COSINE_GRID = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
_LIMITS = ImageLimits(max_bytes=64 << 20, max_pixels=100_000_000)


def _jpeg(img: Any, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def transform(data: bytes, name: str, rng: random.Random) -> bytes:
    """A copy of the image file ``data`` as another seller would upload it."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable image")
    h, w = img.shape[:2]
    if name == "jpeg_q60":
        return _jpeg(img, 60)
    if name == "resized_70":
        return _jpeg(cv2.resize(img, (int(w * 0.7), int(h * 0.7)), interpolation=cv2.INTER_AREA))
    if name == "cropped_10":
        ch, cw = int(h * 0.9), int(w * 0.9)
        y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
        return _jpeg(img[y : y + ch, x : x + cw])
    if name == "mirrored":
        return _jpeg(np.ascontiguousarray(img[:, ::-1]))
    raise ValueError(f"unknown transform {name!r}; one of {', '.join(TRANSFORMS)}")


@dataclass
class SplitPrints:
    """Fingerprints of a split's photos and of their copies."""

    split: str
    labels: list[int]
    originals: list[Fingerprint]
    copies: dict[str, list[Fingerprint]]
    seconds: float
    #: Per original: its class's category in the model (None: a class the model
    #: does not know), the predicted category, its score and the flags.
    categories: list[tuple[str | None, str, float, tuple[str, ...]]] = field(default_factory=list)


def _prints(engine: Engine, blobs: Sequence[bytes]) -> tuple[list[Fingerprint], list[Prediction]]:
    result, prints = predict_with_fingerprints(engine, blobs, _LIMITS)
    out, preds = [], []
    for item, fp in zip(result.items, prints, strict=True):
        if fp is None or not isinstance(item, Prediction):
            raise ValueError(f"a photo could not be labelled: {item}")
        out.append(fp)
        preds.append(item)
    return out, preds


def fingerprint_split(
    engine: Engine, list_file: Path, *, limit: int | None, seed: int, batch: int = 32
) -> SplitPrints:
    """Fingerprint every photo of ``list_file`` (at most ``limit``) and its copies."""
    if list_file.name.startswith("test"):
        raise ValueError(f"{list_file} is the held-back test split: tune on val only")
    dataset = load_dataset(list_file)
    samples = list(dataset.samples)
    if limit is not None:
        samples = random.Random(seed).sample(samples, min(limit, len(samples)))
    rng = random.Random(seed)
    start = time.monotonic()
    originals: list[Fingerprint] = []
    copies: dict[str, list[Fingerprint]] = {t: [] for t in TRANSFORMS}
    categories = []
    known = dict(zip(engine.manifest.labels, engine.manifest.categories, strict=True))
    for i in range(0, len(samples), batch):
        part = samples[i : i + batch]
        chunk = [s.path.read_bytes() for s in part]
        prints, preds = _prints(engine, chunk)
        originals += prints
        categories += [
            (known.get(dataset.classes[s.label]), p.category, p.score, p.flags)
            for s, p in zip(part, preds, strict=True)
        ]
        for name in TRANSFORMS:
            copies[name] += _prints(engine, [transform(b, name, rng) for b in chunk])[0]
        logger.info("%s: %d/%d photos", list_file.stem, min(i + batch, len(samples)), len(samples))
    return SplitPrints(
        list_file.stem,
        [s.label for s in samples],
        originals,
        copies,
        time.monotonic() - start,
        categories,
    )


def _negative_pairs(labels: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Ordered pairs (later, earlier) of different photos of the same fine class."""
    for i, j in itertools.permutations(range(len(labels)), 2):
        if labels[i] == labels[j]:
            yield i, j


def _detected(rule: DuplicateRule, photo: Fingerprint, original: Fingerprint) -> bool:
    return found_by_bands(photo, original, rule) and (rule.match(photo, original) is not None)


def category_scores(prints: SplitPrints, min_score: float) -> dict[str, Any]:
    """``category_mismatch`` flags on true declarations, and the share of photos checked."""
    known = [c for c in prints.categories if c[0] is not None]
    flagged = sum(category_mismatch(t, c, s, f, min_score) for t, c, s, f in known)
    checked = sum(s >= min_score and "unknown_product" not in f for _, _, s, f in known)
    return {
        "min_score": min_score,
        "photos": len(known),
        "flagged_true_declarations": flagged,
        "checked_share": checked / len(known) if known else 0.0,
    }


def score(prints: SplitPrints, rule: DuplicateRule) -> dict[str, Any]:
    """Detection rate per transform and overall, and the false-positive rate, under ``rule``."""
    detection = {
        name: float(
            np.mean([_detected(rule, c, o) for c, o in zip(cs, prints.originals, strict=True)])
        )
        for name, cs in prints.copies.items()
    }
    pairs = list(_negative_pairs(prints.labels))
    false = sum(_detected(rule, prints.originals[i], prints.originals[j]) for i, j in pairs)
    return {
        "split": prints.split,
        "photos": len(prints.originals),
        "max_hamming": rule.max_hamming,
        "min_cosine": rule.min_cosine,
        "detection": detection,
        "detection_overall": float(np.mean(list(detection.values()))),
        "negative_pairs": len(pairs),
        "false_positives": false,
        "false_positive_rate": false / len(pairs) if pairs else 0.0,
    }


def signal_stats(prints: SplitPrints) -> dict[str, dict[str, float]]:
    """How far copies and same-product pairs are, by hash distance and embedding cosine.

    Per transform: the copies' hash distance to their original (median, 99th
    percentile, largest) and cosine (1st percentile, smallest); for the pairs
    of different photos of one product: the smallest distances and largest
    cosines. What the thresholds have to separate.
    """
    out: dict[str, dict[str, float]] = {}
    for name, cs in prints.copies.items():
        d = [c.distance(o) for c, o in zip(cs, prints.originals, strict=True)]
        cos = [c.cosine(o) or 0.0 for c, o in zip(cs, prints.originals, strict=True)]
        out[name] = {
            "hamming_p50": float(np.percentile(d, 50)),
            "hamming_p99": float(np.percentile(d, 99)),
            "hamming_max": float(max(d)),
            "cosine_p1": float(np.percentile(cos, 1)),
            "cosine_min": float(min(cos)),
        }
    pairs = list(_negative_pairs(prints.labels))
    if pairs:
        o = prints.originals
        d = [o[i].distance(o[j]) for i, j in pairs]
        cos = [o[i].cosine(o[j]) or 0.0 for i, j in pairs]
        out["different_photos"] = {
            "hamming_min": float(min(d)),
            "hamming_p1": float(np.percentile(d, 1)),
            "cosine_p99": float(np.percentile(cos, 99)),
            "cosine_max": float(max(cos)),
        }
    return out


def choose_rule(
    prints: SplitPrints, max_fp_rate: float
) -> tuple[DuplicateRule, list[dict[str, Any]]]:
    """The thresholds with the best detection whose false-positive rate is at most ``max_fp_rate``.

    Ties go to fewer false positives, then the stricter cosine, then fewer bits.
    Returns the rule and every grid point's scores.
    """
    grid = [score(prints, DuplicateRule(h, c)) for h in _HAMMING_GRID for c in _COSINE_GRID]
    ok = [g for g in grid if g["false_positive_rate"] <= max_fp_rate] or grid
    best = max(
        ok,
        key=lambda g: (
            g["detection_overall"],
            -g["false_positive_rate"],
            g["min_cosine"],
            -g["max_hamming"],
        ),
    )
    return DuplicateRule(best["max_hamming"], best["min_cosine"]), grid
