"""``vitrine bench inference``: decode, preprocess and inference throughput, without Kafka.

The engine is the worker's own (:mod:`streams.worker.model`), built from the
same settings; the measuring itself is :mod:`inference.serving.bench`. With an
INT8 graph served, the FP32 graph is measured beside it as the baseline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from inference.serving.bench import (
    DEFAULT_BATCH_SIZES,
    compare_reports,
    format_comparison,
    format_report,
    run_benches,
)
from inference.serving.errors import InferenceError, ModelError
from streams.settings import Settings, get_settings
from streams.tools.predict import EXIT_OK, EXIT_UNUSABLE
from streams.worker.model import build_engine, image_limits

__all__ = [
    "bench_inference_reports",
    "inference_report",
    "inference_report_text",
    "run_bench_inference",
]


def bench_inference_reports(
    settings: Settings,
    *,
    batch_sizes: Sequence[int],
    model_dir: Path | None = None,
    images_dir: Path | None = None,
    min_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """``run_bench`` reports of the served engine, after an FP32 baseline when it serves INT8.

    Raises ModelError or ValueError when the model cannot be used, InferenceError
    when the images cannot.
    """
    engines = [build_engine(settings, model_dir=model_dir)]
    try:
        if engines[0].precision == "int8":  # FP32 side by side, as the baseline
            engines.insert(0, build_engine(settings, model_dir=model_dir, precision="fp32"))
        engine = engines[-1]
        print(
            f"benchmarking {engine.model_name} on {engine.provider} ({engine.device}), "
            f"{' and '.join(e.precision for e in engines)}",
            file=sys.stderr,
        )
        return run_benches(
            engines,
            images=[images_dir] if images_dir is not None else None,
            batch_sizes=batch_sizes,
            limits=image_limits(settings),
            min_seconds=min_seconds,
            progress=lambda message: print(f"  {message}", file=sys.stderr),
        )
    finally:
        for e in engines:
            e.close()


def run_bench_inference(
    *,
    as_json: bool,
    batch_sizes: Sequence[int] | None,
    model_dir: Path | None,
    images_dir: Path | None,
    settings: Settings | None = None,
    min_seconds: float = 1.0,
    out: TextIO | None = None,
) -> int:
    """Measure decode, preprocess and inference throughput per batch size; print the report.

    Progress goes to stderr; the report (a table, or one JSON object) to stdout.
    With an INT8 graph served, the FP32 graph is measured beside it (taking turns)
    and the report carries it as ``baseline`` with the ratios as ``comparison``.
    """
    out = out or sys.stdout
    settings = settings or get_settings()
    sizes = list(batch_sizes or DEFAULT_BATCH_SIZES)
    if min(sizes) < 1:
        print(f"batch sizes must be >= 1, got {sizes}", file=sys.stderr)
        return EXIT_UNUSABLE
    if images_dir is not None and not images_dir.is_dir():
        print(f"--images-dir {images_dir} is not a directory", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        reports = bench_inference_reports(
            settings, batch_sizes=sizes, model_dir=model_dir, images_dir=images_dir,
            min_seconds=min_seconds,
        )  # fmt: skip
    except (ModelError, ValueError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except InferenceError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(inference_report_text(reports, as_json=as_json), file=out)
    return EXIT_OK


def inference_report(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The served engine's report; with a baseline, that and the ratios beside it."""
    report = dict(reports[-1])
    if len(reports) > 1:
        report |= {"baseline": reports[0], "comparison": compare_reports(*reports)}
    return report


def inference_report_text(reports: Sequence[dict[str, Any]], *, as_json: bool) -> str:
    """One JSON object, or the tables one after the other and the ratios."""
    report = inference_report(reports)
    if as_json:
        return json.dumps(report, indent=2)
    text = [format_report(r) for r in reports]
    if "comparison" in report:
        text.append(format_comparison(report["comparison"]))
    return "\n\n".join(text)
