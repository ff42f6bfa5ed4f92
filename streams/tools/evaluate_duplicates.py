"""``vitrine evaluate-duplicates``: fit and check the duplicate thresholds on labelled photos.

The work is :mod:`inference.training.duplicates_eval`; this module loads the
worker's engine from the settings (the same model, hence the same embeddings),
prints the results and, with ``--report``, writes them as JSON and Markdown
(``docs/integrity/duplicates.json`` and ``.md``), so that the docs cite a file.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from inference.serving.duplicates import DuplicateRule
from inference.training.duplicates_eval import (
    FAMILIES,
    TRANSFORMS,
    SplitSignals,
    category_scores,
    choose_rule,
    fingerprint_split,
    score,
    signal_stats,
    split_signals,
)
from streams.settings import get_settings
from streams.worker.model import build_engine

__all__ = ["markdown_report", "run_evaluate_duplicates"]

logger = logging.getLogger(__name__)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _line(res: dict[str, Any]) -> str:
    fams = "  ".join(f"{f} {_pct(v)}" for f, v in res["families"].items())
    return (
        f"{res['split']:>6}: {res['photos']} photos; detected {_pct(res['detection_overall'])}"
        f" ({fams}); false positives {res['false_positives']}/{res['negative_pairs']}"
        f" = {100 * res['false_positive_rate']:.3f}% of same-product pairs,"
        f" {res['false_positives_all']}/{res['all_pairs']} of all pairs"
    )


def markdown_report(out: dict[str, Any]) -> str:
    """The report as Markdown: the rule, per transform and family, false positives."""
    fit, checks = out["chosen"], out["checks"]
    splits = [fit, *checks]
    head = " | ".join(f"{r['split']}{' (fit)' if r is fit else ' (check)'}" for r in splits)
    rule = out["rule"]
    lines = [
        "# Duplicate checks: detection and false positives",
        "",
        f"Written by `{out['command']}` ({out['seconds']:.0f} s; model {out['model']}).",
        "Thresholds fitted on the first split (the best worst-family detection with at"
        f" most {100 * out['max_fp_rate']:g}% false positives on pairs of different photos"
        " of the same product), checked on the others:",
        f"`VITRINE_NEAR_DUPLICATE_MAX_HAMMING={rule['max_hamming']}`,"
        f" `VITRINE_NEAR_DUPLICATE_MIN_COSINE={rule['min_cosine']}`,"
        f" `VITRINE_NEAR_DUPLICATE_MIN_INLIERS={rule['min_inliers']}`,"
        f" `VITRINE_NEAR_DUPLICATE_MIN_HASH_INLIERS={rule['min_hash_inliers']}`.",
        "",
        f"| family | transform | {head} | found by (last split): hash / verified |",
        "|---|---|" + "---|" * len(splits) + "---|",
    ]
    for name in TRANSFORMS:
        cells = " | ".join(_pct(r["detection"][name]) for r in splits)
        h = splits[-1]["detected_by"][name]
        lines.append(f"| {FAMILIES[name]} | {name} | {cells} | {h['hash']} / {h['verified']} |")
    lines += ["", f"| family | {head} |", "|---|" + "---|" * len(splits)]
    for fam in dict.fromkeys(FAMILIES.values()):
        lines.append(f"| {fam} | " + " | ".join(_pct(r["families"][fam]) for r in splits) + " |")
    lines += [
        "",
        "| false positives | " + head + " |",
        "|---|" + "---|" * len(splits),
        "| different photos of the same product | "
        + " | ".join(
            f"{r['false_positives']} of {r['negative_pairs']:,}"
            f" ({100 * r['false_positive_rate']:.3f}%)"
            for r in splits
        )
        + " |",
        "| any two different photos of the split | "
        + " | ".join(
            f"{r['false_positives_all']} of {r['all_pairs']:,}"
            f" ({100 * r['false_positive_rate_all']:.4f}%)"
            for r in splits
        )
        + " |",
        "",
        "Signals (what the thresholds separate), per split and transform, from"
        " `duplicates.json` (`signals`).",
        "",
    ]
    return "\n".join(lines)


#: Grid points kept in the report besides the chosen one (the whole grid is 10 MB).
_RUNNERS_UP = 25


def runners_up(grid: list[dict[str, Any]], max_fp_rate: float) -> list[dict[str, Any]]:
    """The best grid points within ``max_fp_rate``, by worst family then mean, per family only.

    What a reader needs to see how close the other thresholds came; the
    per-transform rates of each point are left out.
    """
    ok = [g for g in grid if g["false_positive_rate"] <= max_fp_rate]
    ok.sort(key=lambda g: (min(g["families"].values()), g["detection_overall"]), reverse=True)
    keep = ("max_hamming", "min_cosine", "min_inliers", "min_hash_inliers", "families",
            "detection_overall", "false_positive_rate", "false_positive_rate_all")  # fmt: skip
    return [{k: g[k] for k in keep} for g in ok[:_RUNNERS_UP]]


def run_evaluate_duplicates(
    data: Path,
    *,
    fit_split: str,
    check_split: str | None,
    limit: int | None,
    seed: int,
    max_fp_rate: float,
    as_json: bool,
    report_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Fit the thresholds on ``fit_split``, check them on ``check_split``; print; exit status."""
    started = time.monotonic()
    s = get_settings()
    engine = build_engine(s)
    names = [fit_split] + ([check_split] if check_split else [])
    sigs: list[SplitSignals] = []
    cats = []
    for i, name in enumerate(names):
        prints = fingerprint_split(
            engine, data / f"{name}.txt", limit=limit, seed=seed + i, cache_dir=cache_dir
        )
        cats.append(category_scores(prints, s.integrity.category_mismatch_min_score))
        sigs.append(split_signals(prints))
    rule, grid = choose_rule(sigs[0], max_fp_rate)
    results = [score(sig, rule) for sig in sigs]
    configured = DuplicateRule(
        s.integrity.near_duplicate_max_hamming,
        s.integrity.near_duplicate_min_cosine,
        s.integrity.near_duplicate_min_inliers,
        s.integrity.near_duplicate_min_hash_inliers,
    )
    out: dict[str, Any] = {
        "command": "vitrine evaluate-duplicates"
        + f" --fit-split {fit_split} --check-split {check_split or ''}"
        + (f" --limit {limit}" if limit else "")
        + f" --seed {seed} --max-fp-rate {max_fp_rate}",
        "model": f"{engine.model_name} {engine.model_version}",
        "max_fp_rate": max_fp_rate,
        "rule": {
            "max_hamming": rule.max_hamming,
            "min_cosine": rule.min_cosine,
            "min_inliers": rule.min_inliers,
            "min_hash_inliers": rule.min_hash_inliers,
        },
        "chosen": results[0],
        "checks": results[1:],
        "configured": [score(sig, configured) for sig in sigs],
        "category_mismatch": cats,
        "signals": {sig.split: signal_stats(sig) for sig in sigs},
        "runners_up": runners_up(grid, max_fp_rate),
        "grid_points": len(grid),
        "seconds": time.monotonic() - started,
    }
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "duplicates.json").write_text(json.dumps(out, indent=1) + "\n")
        (report_dir / "duplicates.md").write_text(markdown_report(out))
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        _print(out, names, cats)
    return 0


def _print(out: dict[str, Any], names: list[str], cats: list[dict[str, Any]]) -> None:
    rule = out["rule"]
    results = [out["chosen"], *out["checks"]]
    print(f"model {out['model']}; thresholds fitted on {names[0]}:")
    print(
        f"  VITRINE_NEAR_DUPLICATE_MAX_HAMMING={rule['max_hamming']}"
        f"  VITRINE_NEAR_DUPLICATE_MIN_COSINE={rule['min_cosine']}"
        f"  VITRINE_NEAR_DUPLICATE_MIN_INLIERS={rule['min_inliers']}"
        f"  VITRINE_NEAR_DUPLICATE_MIN_HASH_INLIERS={rule['min_hash_inliers']}"
    )
    for res in results:
        print(_line(res))
        for name in TRANSFORMS:
            print(
                f"{res['split']:>6}: {FAMILIES[name]:>13} {name:<24} {_pct(res['detection'][name])}"
            )
    for res in out["configured"]:
        print(f"current settings: {_line(res)}")
    for p, cat in zip(names, cats, strict=True):
        print(
            f"{p:>6}: category_mismatch at category score >= {cat['min_score']}"
            f" (VITRINE_CATEGORY_MISMATCH_MIN_SCORE): {cat['flagged_true_declarations']} of"
            f" {cat['photos']} photos flagged although declared with their true category;"
            f" {100 * cat['checked_share']:.1f}% predicted confidently enough to be checked"
        )
    print(f"{out['seconds']:.0f} s")
