"""``vitrine evaluate-duplicates``: how well the duplicate checks find copies, and their errors.

For every photo of a labelled split, the copies another seller would upload
are made, plain and disguised (:mod:`inference.training.disguises`: borders,
tight crops, rotations, watermarks, colour changes, screenshots, heavy
re-compression, combinations), and the worker's own code decides: a copy is
found as a candidate the way the worker finds it (a hash band lookup,
:func:`found_by_bands`, or the embedding nearest neighbours in an index of the
split's photos, :meth:`FingerprintIndex.similar`) and judged by
:class:`DuplicateRule` (hash and embedding, or verified local features).
False positives are counted over ordered pairs of *different* photos of the
same fine class (the hardest negatives a catalogue has: the same packaging,
same shelf, another shot), and over every pair of different photos of the
split that the candidate search reaches. Thresholds are fitted on one split
(train) and checked on another (val); the held-back test split is refused.

The originals' predictions also measure ``category_mismatch``: how many photos
would be flagged although the seller declared their true category (the
model's category of their class), and how many are predicted confidently
enough to be checked at all.
"""

from __future__ import annotations

import logging
import pickle
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.serving.decode import ImageLimits
from inference.serving.duplicate_index import FingerprintIndex, StoredPrint
from inference.serving.duplicates import DuplicateRule
from inference.serving.engine import Engine, Prediction, predict_with_fingerprints
from inference.serving.fingerprint import Fingerprint
from inference.serving.keypoints import verify
from inference.serving.taxonomy import category_mismatch
from inference.training.dataset import load_dataset
from inference.training.disguises import FAMILIES, TRANSFORMS, transform

__all__ = [
    "FAMILIES",
    "TRANSFORMS",
    "PairSignals",
    "SplitPrints",
    "category_scores",
    "choose_rule",
    "fingerprint_split",
    "pair_signals",
    "score",
    "signal_stats",
]

logger = logging.getLogger(__name__)

_HAMMING_GRID = tuple(range(4, 17, 4))
_COSINE_GRID = (0.7, 0.8, 0.85, 0.9)
_INLIER_GRID = (0, *range(10, 81, 2))
_HASH_INLIER_GRID = (0, 10, 15, 20, 25, 30, 40)
#: Embedding neighbours verified per photo (the worker's
#: ``near_duplicate_verify_candidates``).
SIMILAR = 4
_LIMITS = ImageLimits(max_bytes=64 << 20, max_pixels=100_000_000)
_MODEL = "eval"


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
    engine: Engine,
    list_file: Path,
    *,
    limit: int | None,
    seed: int,
    batch: int = 32,
    cache_dir: Path | None = None,
) -> SplitPrints:
    """Fingerprint every photo of ``list_file`` (at most ``limit``) and its copies.

    With ``cache_dir``, the result is kept there (a pickle named by the split,
    limit, seed, model version and transforms) and read back on a later run.
    """
    if list_file.name.startswith("test"):
        raise ValueError(f"{list_file} is the held-back test split: tune on val only")
    cached = None
    if cache_dir is not None:
        tag = f"{list_file.stem}-{limit}-{seed}-{engine.model_version}-{len(TRANSFORMS)}"
        cached = cache_dir / f"duplicates-{tag}.pickle"
        if cached.exists():
            logger.info("fingerprints of %s read from %s", list_file.stem, cached)
            got: SplitPrints = pickle.loads(cached.read_bytes())  # our own file
            return got
    prints = _fingerprint_split(engine, list_file, limit=limit, seed=seed, batch=batch)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(pickle.dumps(prints))
    return prints


def _fingerprint_split(
    engine: Engine, list_file: Path, *, limit: int | None, seed: int, batch: int
) -> SplitPrints:
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


@dataclass
class PairSignals:
    """What the checks see of (query, indexed photo) pairs that the candidate search reaches."""

    query: npt.NDArray[np.int64]
    original: npt.NDArray[np.int64]
    #: Bits from the query's hash (or its mirror's) to the nearest indexed hash of the
    #: original that shares a band with it (99: none shares a band).
    band_bits: npt.NDArray[np.int64]
    #: The original is one of the query's :data:`SIMILAR` embedding neighbours.
    similar: npt.NDArray[np.bool_]
    distance: npt.NDArray[np.int64]
    cosine: npt.NDArray[np.float64]
    inliers: npt.NDArray[np.int64]

    def detected(self, rule: DuplicateRule) -> npt.NDArray[np.bool_]:
        """Per pair: a candidate, and judged a copy by ``rule`` (as :meth:`DuplicateRule.match`)."""
        candidate = (self.band_bits <= rule.candidate_hamming) | self.similar
        by_hash = (self.distance <= rule.max_hamming) & (self.cosine >= rule.min_cosine)
        verified = (
            (self.inliers >= rule.min_inliers)
            if rule.min_inliers > 0
            else np.zeros(len(self.query), bool)
        )
        if rule.min_hash_inliers > 0:
            verified |= (self.distance <= rule.max_hamming) & (
                self.inliers >= rule.min_hash_inliers
            )
        return candidate & (by_hash | verified)

    def by_step(self, rule: DuplicateRule) -> tuple[int, int]:
        """Detected pairs accepted by the hash test, and by verified features alone."""
        hit = self.detected(rule)
        by_hash = hit & (self.distance <= rule.max_hamming) & (self.cosine >= rule.min_cosine)
        return int(by_hash.sum()), int((hit & ~by_hash).sum())


def _index(originals: Sequence[Fingerprint]) -> FingerprintIndex:
    index = FingerprintIndex()
    for i, fp in enumerate(originals):
        index.add(f"{i:064x}", f"seller{i}", f"p{i}", i, StoredPrint(fp, _MODEL))
    return index


def pair_signals(
    queries: Sequence[Fingerprint],
    originals: Sequence[Fingerprint],
    index: FingerprintIndex,
    *,
    same_rows: bool,
    only_own: bool = False,
) -> PairSignals:
    """The signals of every pair the worker's candidate search reaches.

    ``same_rows``: the queries are the indexed photos (each excluded from its own
    search); ``only_own``: keep only the pair of query k and original k (a copy and
    its original).
    """
    cols: dict[str, list[Any]] = {k: [] for k in PairSignals.__dataclass_fields__}
    for k, q in enumerate(queries):
        exclude = k if same_rows else None
        near = dict(
            index.near(
                q, max_bits=64, max_candidates=1 << 30, limit=len(originals), exclude=exclude
            )
        )
        similar = {
            r for r, _ in index.similar(q, model_version=_MODEL, limit=SIMILAR, exclude=exclude)
        }
        rows = sorted(set(near) | similar)
        if only_own:
            rows = [r for r in rows if r == k]
        for r in rows:
            o = originals[r]
            cols["query"].append(k)
            cols["original"].append(r)
            cols["band_bits"].append(near.get(r, 99))
            cols["similar"].append(r in similar)
            cols["distance"].append(q.distance(o))
            cols["cosine"].append(q.cosine(o) or 0.0)
            both = q.features is not None and o.features is not None
            cols["inliers"].append(verify(q.features, o.features).inliers if both else 0)  # type: ignore[arg-type]
    return PairSignals(
        np.asarray(cols["query"], np.int64),
        np.asarray(cols["original"], np.int64),
        np.asarray(cols["band_bits"], np.int64),
        np.asarray(cols["similar"], bool),
        np.asarray(cols["distance"], np.int64),
        np.asarray(cols["cosine"], np.float64),
        np.asarray(cols["inliers"], np.int64),
    )


@dataclass
class SplitSignals:
    """A split's copies' and originals' pair signals, and how many pairs each rate is over."""

    split: str
    photos: int
    copies: dict[str, PairSignals]
    originals: PairSignals
    labels: npt.NDArray[np.int64]

    @property
    def negative_pairs(self) -> int:
        """Ordered pairs of different photos of the same fine class."""
        _, counts = np.unique(self.labels, return_counts=True)
        return int((counts * (counts - 1)).sum())

    @property
    def all_pairs(self) -> int:
        """Ordered pairs of different photos."""
        return self.photos * (self.photos - 1)


def split_signals(prints: SplitPrints) -> SplitSignals:
    """Every pair signal of a split: copies against their originals, originals against others."""
    index = _index(prints.originals)
    copies = {
        name: pair_signals(cs, prints.originals, index, same_rows=False, only_own=True)
        for name, cs in prints.copies.items()
    }
    others = pair_signals(prints.originals, prints.originals, index, same_rows=True)
    labels = np.asarray(prints.labels, np.int64)
    return SplitSignals(prints.split, len(prints.originals), copies, others, labels)


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


def score(sig: SplitSignals, rule: DuplicateRule) -> dict[str, Any]:
    """Detection per transform and family, and the false-positive rates, under ``rule``."""
    detection = {name: float(p.detected(rule).sum()) / sig.photos for name, p in sig.copies.items()}
    steps = {name: p.by_step(rule) for name, p in sig.copies.items()}
    families: dict[str, list[float]] = {}
    for name, rate in detection.items():
        families.setdefault(FAMILIES[name], []).append(rate)
    o = sig.originals
    hit = o.detected(rule)
    same = sig.labels[o.query] == sig.labels[o.original]
    false_hard = int((hit & same).sum())
    false_all = int(hit.sum())
    return {
        "split": sig.split,
        "photos": sig.photos,
        "max_hamming": rule.max_hamming,
        "min_cosine": rule.min_cosine,
        "min_inliers": rule.min_inliers,
        "min_hash_inliers": rule.min_hash_inliers,
        "detection": detection,
        "detected_by": {n: {"hash": h, "verified": v} for n, (h, v) in steps.items()},
        "families": {f: float(np.mean(r)) for f, r in families.items()},
        "detection_overall": float(np.mean(list(detection.values()))),
        "negative_pairs": sig.negative_pairs,
        "false_positives": false_hard,
        "false_positive_rate": false_hard / sig.negative_pairs if sig.negative_pairs else 0.0,
        "all_pairs": sig.all_pairs,
        "false_positives_all": false_all,
        "false_positive_rate_all": false_all / sig.all_pairs if sig.all_pairs else 0.0,
    }


def signal_stats(sig: SplitSignals) -> dict[str, dict[str, float]]:
    """How far copies and same-product pairs are: hash bits, embedding cosine, inliers.

    Per transform, over the copies that the candidate search reaches: hash
    distance (median, largest), cosine (1st percentile), inliers (5th
    percentile, median); for the pairs of different photos of one product that
    it reaches: the smallest distance, largest cosine and most inliers. What
    the thresholds have to separate.
    """
    out: dict[str, dict[str, float]] = {}
    for name, p in sig.copies.items():
        if not len(p.query):
            continue
        out[name] = {
            "reached": len(p.query) / sig.photos,
            "hamming_p50": float(np.percentile(p.distance, 50)),
            "hamming_max": float(p.distance.max()),
            "cosine_p1": float(np.percentile(p.cosine, 1)),
            "inliers_p5": float(np.percentile(p.inliers, 5)),
            "inliers_p50": float(np.percentile(p.inliers, 50)),
        }
    o = sig.originals
    same = sig.labels[o.query] == sig.labels[o.original]
    if same.any():
        out["different_photos"] = {
            "hamming_min": float(o.distance[same].min()),
            "cosine_max": float(o.cosine[same].max()),
            "inliers_p99": float(np.percentile(o.inliers[same], 99)),
            "inliers_max": float(o.inliers[same].max()),
        }
    return out


def choose_rule(
    sig: SplitSignals, max_fp_rate: float
) -> tuple[DuplicateRule, list[dict[str, Any]]]:
    """The thresholds whose worst transform family is best caught, within ``max_fp_rate``.

    The false-positive rate is over pairs of different photos of the same
    product. Ties go to the better mean detection, then fewer false positives,
    then the stricter thresholds. Returns the rule and every grid point's scores.
    """
    grid = [
        score(sig, DuplicateRule(h, c, m, k))
        for h in _HAMMING_GRID
        for c in _COSINE_GRID
        for m in _INLIER_GRID
        for k in _HASH_INLIER_GRID
    ]
    ok = [g for g in grid if g["false_positive_rate"] <= max_fp_rate] or grid
    best = max(
        ok,
        key=lambda g: (
            min(g["families"].values()),
            g["detection_overall"],
            -g["false_positive_rate"],
            g["min_cosine"],
            -g["max_hamming"],
            g["min_inliers"],
            g["min_hash_inliers"],
        ),
    )
    rule = DuplicateRule(
        best["max_hamming"], best["min_cosine"], best["min_inliers"], best["min_hash_inliers"]
    )
    return rule, grid
