"""``vitrine predict`` and ``vitrine bench inference``: the worker's engine, without Kafka.

Plain functions that return an exit code (0 success, 1 some images failed,
2 the model or the options are unusable); :mod:`streams.tools.cli` wires them
into the click group. The engine is the worker's own (:mod:`streams.worker.model`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from inference.serving.bench import (
    DEFAULT_BATCH_SIZES,
    compare_reports,
    format_comparison,
    format_report,
    run_benches,
)
from inference.serving.engine import Prediction
from inference.serving.errors import InferenceError, ModelError
from streams.settings import Settings, get_settings
from streams.worker.imageresult import ImageResult
from streams.worker.model import build_engine, image_limits

__all__ = [
    "bench_inference_reports",
    "inference_report",
    "inference_report_text",
    "run_bench_inference",
    "run_predict",
]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE = 0, 1, 2


def _error_dict(code: str, message: str, *, retriable: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, "retriable": retriable}


def _read(path: Path) -> bytes | dict[str, Any]:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return _error_dict("file.not_found", f"no such file: {path}")
    except IsADirectoryError:
        return _error_dict("file.unreadable", f"{path} is a directory")
    except OSError as exc:
        return _error_dict("file.unreadable", f"cannot read {path}: {exc.strerror or exc}")


def _print_table(path: Path, item: ImageResult | dict[str, Any], out: TextIO) -> None:
    print(str(path), file=out)
    if not isinstance(item, ImageResult):
        print(f"  ERROR {item['code']}: {item['message']}", file=out)
        return
    for label, score in item.labels:
        print(f"  {score:7.2%}  {label}", file=out)
    print(f"  category: {item.category} ({item.score:.2%})", file=out)
    if item.flags:
        print(f"  flags: {', '.join(item.flags)}", file=out)


def run_predict(
    paths: list[Path],
    *,
    as_json: bool,
    top_k: int,
    model_dir: Path | None,
    settings: Settings | None = None,
    out: TextIO | None = None,
) -> int:
    """Label image files; print a table, or one JSON object per image (JSON Lines).

    Returns 0 when every image was labelled, 1 when some failed (each failure is
    printed with its error code), 2 when the model cannot be loaded.
    """
    out = out or sys.stdout
    settings = settings or get_settings()
    if not paths:
        print("no images given", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        engine = build_engine(settings, model_dir=model_dir, top_k=top_k)
    except (ModelError, ValueError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    limits = image_limits(settings)
    failed = 0
    batch_size = settings.max_batch_size
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        blobs = [_read(p) for p in chunk]
        readable = [b for b in blobs if isinstance(b, bytes)]
        results = iter(engine.predict_bytes(readable, limits).items)
        for path, blob in zip(chunk, blobs, strict=True):
            item: Prediction | InferenceError | dict[str, Any] = (
                next(results) if isinstance(blob, bytes) else blob
            )
            shown: ImageResult | dict[str, Any]
            if isinstance(item, Prediction):
                # The image cache's form of a prediction: one shape for both.
                shown = ImageResult.of(item)
                record = {"path": str(path)} | msgspec.to_builtins(shown)
            else:
                failed += 1
                shown = item.to_dict() if isinstance(item, InferenceError) else item
                record = {"path": str(path), "error": shown}
            if as_json:
                print(json.dumps(record, ensure_ascii=False), file=out)
            else:
                _print_table(path, shown, out)
    return EXIT_SOME_FAILED if failed else EXIT_OK


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
