"""``vitrine evaluate-duplicates``: fit and check the near-duplicate thresholds on labelled photos.

The work is :mod:`inference.training.duplicates_eval`; this module loads the
worker's engine from the settings (the same model, hence the same embeddings)
and prints the results.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from inference.serving.duplicates import DuplicateRule
from inference.training.duplicates_eval import (
    TRANSFORMS,
    SplitPrints,
    category_scores,
    choose_rule,
    fingerprint_split,
    score,
    signal_stats,
)
from streams.settings import get_settings
from streams.worker.model import build_engine

__all__ = ["run_evaluate_duplicates"]

logger = logging.getLogger(__name__)


def _line(res: dict[str, Any]) -> str:
    det = "  ".join(f"{t} {100 * res['detection'][t]:.1f}%" for t in TRANSFORMS)
    return (
        f"{res['split']:>6}: {res['photos']} photos; detected {100 * res['detection_overall']:.2f}%"
        f" ({det}); false positives {res['false_positives']}/{res['negative_pairs']}"
        f" = {100 * res['false_positive_rate']:.3f}% of same-product pairs"
    )


def run_evaluate_duplicates(
    data: Path,
    *,
    fit_split: str,
    check_split: str | None,
    limit: int | None,
    seed: int,
    max_fp_rate: float,
    as_json: bool,
) -> int:
    """Fit the thresholds on ``fit_split``, check them on ``check_split``; print; exit status."""
    started = time.monotonic()
    s = get_settings()
    engine = build_engine(s)
    splits: list[SplitPrints] = [
        fingerprint_split(engine, data / f"{fit_split}.txt", limit=limit, seed=seed)
    ]
    rule, grid = choose_rule(splits[0], max_fp_rate)
    if check_split:
        splits.append(
            fingerprint_split(engine, data / f"{check_split}.txt", limit=limit, seed=seed + 1)
        )
    results = [score(p, rule) for p in splits]
    categories = [category_scores(p, s.integrity.category_mismatch_min_score) for p in splits]
    signals = {p.split: signal_stats(p) for p in splits}
    elapsed = time.monotonic() - started
    if as_json:
        out = {
            "chosen": results[0],
            "checks": results[1:],
            "category_mismatch": categories,
            "signals": signals,
            "grid": grid,
            "seconds": elapsed,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"model {engine.model_name} {engine.model_version}; thresholds fitted on {fit_split}"
        f" (best detection with false positives <= {100 * max_fp_rate:g}%):"
    )
    print(
        f"  VITRINE_NEAR_DUPLICATE_MAX_HAMMING={rule.max_hamming}"
        f"  VITRINE_NEAR_DUPLICATE_MIN_COSINE={rule.min_cosine}"
    )
    for res in results:
        print(_line(res))
    for split, stats in signals.items():
        for what, values in stats.items():
            shown = "  ".join(f"{k} {v:.3g}" for k, v in values.items())
            print(f"{split:>6}: {what:>16}: {shown}")
    for p, cat in zip(splits, categories, strict=True):
        print(
            f"{p.split:>6}: category_mismatch at category score >= {cat['min_score']}"
            f" (VITRINE_CATEGORY_MISMATCH_MIN_SCORE): {cat['flagged_true_declarations']} of"
            f" {cat['photos']} photos flagged although declared with their true category;"
            f" {100 * cat['checked_share']:.1f}% predicted confidently enough to be checked"
        )
    configured = DuplicateRule(
        s.integrity.near_duplicate_max_hamming, s.integrity.near_duplicate_min_cosine
    )
    if (configured.max_hamming, configured.min_cosine) != (rule.max_hamming, rule.min_cosine):
        current = score(splits[0], configured)
        print(
            f"current settings (max_hamming {configured.max_hamming}, min_cosine"
            f" {configured.min_cosine}):\n{_line(current)}"
        )
    print(f"{elapsed:.0f} s")
    return 0
