"""Throughput of each stage (decode, preprocess, inference) and end to end, per batch size.

Runs on real product photos (the shipped samples by default), on whatever
provider the engine chose, and returns a JSON-able dict; ``vitrine bench`` prints
it. Measurements go in ``rounds``: each round measures every stage at every
batch size (inference for about ``min_seconds / rounds``), so a change in machine
load during the run skews all batch sizes alike instead of the last ones; the
report gives the median over rounds, the range of the inference rate, and the
load average before and after.

``preprocess_float_nchw`` is measured as well: the CPU cost of normalising to
float32 NCHW, as a model without normalisation folded into its graph needs, so
the gain of handing the graph uint8 crops shows in every report.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.samples import sample_images
from inference.serving.decode import ImageLimits, decode_image
from inference.serving.engine import Engine
from inference.serving.errors import ImageError
from inference.serving.preprocess import sharpness

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "compare_reports",
    "format_comparison",
    "format_report",
    "run_bench",
    "run_benches",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _rate(work: Callable[[], object], items: int, min_seconds: float) -> tuple[float, float]:
    """Items per wall-clock second and per CPU-second of this process, over at least one call.

    The CPU-second rate barely moves when other processes compete for the cores, so it
    tells a busy machine apart from a slow configuration.
    """
    calls = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            cpu = max(time.process_time() - cpu_start, 1e-9)
            return items * calls / elapsed, items * calls / cpu


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every number)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not available on this platform
        return None


def _images_in(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)


def _bench_paths(images: Sequence[Path] | None) -> list[Path]:
    """The image files to benchmark with: the given list, a folder's images, or the samples."""
    paths = list(images) if images is not None else sample_images()
    if len(paths) == 1 and paths[0].is_dir():
        paths = _images_in(paths[0])
    if not paths:
        raise ValueError("no images to benchmark with")
    return paths


def _load_blobs(
    paths: Sequence[Path], limits: ImageLimits, min_side: int
) -> tuple[list[bytes], list[Any]]:
    """Read and decode every path, skipping (with a warning) those that do not decode."""
    blobs, decoded = [], []
    for path in paths:
        blob = path.read_bytes()
        try:
            decoded.append(decode_image(blob, limits, min_side=min_side))
        except ImageError as exc:
            logger.warning("benchmark skips %s: %s", path, exc)
            continue
        blobs.append(blob)
    if not blobs:
        raise ValueError(f"none of the {len(paths)} images could be decoded")
    return blobs, decoded


def _cycle(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taken round-robin from ``items``."""
    return [items[i % len(items)] for i in range(n)]


def _batch_stages(
    engine: Engine, n: int, pixels: Sequence[Any], blobs: Sequence[bytes], limits: ImageLimits
) -> dict[str, tuple[Callable[[], object], float]]:
    """The timed work of each stage at batch size ``n``, with its share of the round's time."""
    pre = engine.preprocessor
    float_pre = dataclasses.replace(pre, layout="NCHW", dtype="float32", normalise=True)
    batch_pixels = _cycle(pixels, n)
    batch_blobs = _cycle(blobs, n)
    tensor = pre.batch(batch_pixels)

    def preprocess(batch: list[Any] = batch_pixels) -> None:
        crops = pre.crops(batch)
        pre.to_model_input(crops)
        sharpness(crops)

    def preprocess_float(batch: list[Any] = batch_pixels) -> None:
        crops = float_pre.crops(batch)
        float_pre.to_model_input(crops)
        sharpness(crops)

    def infer(t: Any = tensor) -> None:
        engine.infer(t)

    def end_to_end(b: list[bytes] = batch_blobs) -> None:
        engine.predict_bytes(b, limits)

    infer()  # first run at a new batch shape allocates; keep it out of the timing
    return {
        "preprocess_ips": (preprocess, 0.25),
        "preprocess_float_nchw_ips": (preprocess_float, 0.25),
        "inference_ips": (infer, 1.0),
        "end_to_end_ips": (end_to_end, 1.0),
    }


def _batch_rows(
    batch_sizes: Sequence[int],
    stages: dict[int, dict[str, tuple[Callable[[], object], float]]],
    rates: dict[tuple[int, str], list[tuple[float, float]]],
) -> list[dict[str, Any]]:
    """One report row per batch size: the median rate of each stage over the rounds."""
    rows = []
    for n in batch_sizes:
        row: dict[str, Any] = {"batch_size": n}
        for name in stages[n]:
            row[name] = statistics.median(wall for wall, _ in rates[(n, name)])
        inference = rates[(n, "inference_ips")]
        row["inference_batch_ms"] = 1000.0 * n / row["inference_ips"]
        row["inference_ips_range"] = [min(w for w, _ in inference), max(w for w, _ in inference)]
        row["inference_ips_per_cpu_s"] = statistics.median(cpu for _, cpu in inference)
        rows.append(row)
    return rows


def _summary(rows: list[dict[str, Any]], decode_ips: float) -> dict[str, Any]:
    """The headline numbers: best batch size, batching speedup, CPU side against inference."""
    best = max(rows, key=lambda r: r["inference_ips"])
    first = rows[0]
    cpu_side_ips = 1.0 / (1.0 / decode_ips + 1.0 / best["preprocess_ips"])
    return {
        "best_inference_batch_size": best["batch_size"],
        "best_inference_ips": best["inference_ips"],
        "best_end_to_end_ips": max(r["end_to_end_ips"] for r in rows),
        "batching_speedup": best["inference_ips"] / first["inference_ips"],
        "decode_plus_preprocess_ips": cpu_side_ips,
        "cpu_side_vs_inference": cpu_side_ips / best["inference_ips"],
        "baseline_batch_size": first["batch_size"],
    }


def run_bench(
    engine: Engine,
    *,
    images: Sequence[Path] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    limits: ImageLimits | None = None,
    min_seconds: float = 1.0,
    rounds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure images/s of each stage and end to end at each batch size.

    ``images`` may list files or be a single folder (searched recursively);
    batches cycle through them. Returns a JSON-able dict.
    """
    return run_benches(
        [engine],
        images=images,
        batch_sizes=batch_sizes,
        limits=limits,
        min_seconds=min_seconds,
        rounds=rounds,
        progress=progress,
    )[0]


def run_benches(
    engines: Sequence[Engine],
    *,
    images: Sequence[Path] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    limits: ImageLimits | None = None,
    min_seconds: float = 1.0,
    rounds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`run_bench` for several engines (e.g. FP32 and INT8) taking turns.

    Every round measures each engine at every batch size in turn, so a change in
    the machine's load during the run weighs on all of them alike.
    """
    limits = limits or ImageLimits()
    paths = _bench_paths(images)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    min_side = engines[0].manifest.resize_short_side
    blobs, decoded = _load_blobs(paths, limits, min_side)
    pixels = [d.pixels for d in decoded]
    say = progress or (lambda _message: None)
    stages = [{n: _batch_stages(e, n, pixels, blobs, limits) for n in batch_sizes} for e in engines]

    def decode_all() -> None:
        for blob in blobs:
            decode_image(blob, limits, min_side=min_side)

    rounds = max(1, rounds)
    load_before = _load_average()
    decode_rates: list[float] = []
    rates: list[dict[tuple[int, str], list[tuple[float, float]]]] = [{} for _ in engines]
    for r in range(rounds):
        say(f"round {r + 1}/{rounds}: decode, then batch sizes {list(batch_sizes)}")
        decode_rates.append(_rate(decode_all, len(blobs), min_seconds / rounds)[0])
        for n in batch_sizes:
            for engine_stages, engine_rates in zip(stages, rates, strict=True):
                for name, (work, share) in engine_stages[n].items():
                    rate = _rate(work, n, share * min_seconds / rounds)
                    engine_rates.setdefault((n, name), []).append(rate)
    decode_ips = statistics.median(decode_rates)
    shapes = sorted({(d.width, d.height) for d in decoded})
    common = {
        "images": {
            "count": len(blobs),
            "source": str(Path(paths[0]).parent),
            "sizes": [f"{w}x{h}" for w, h in shapes[:10]],
            "total_bytes": sum(len(b) for b in blobs),
        },
        "settings": {"min_seconds": min_seconds, "rounds": rounds},
        "load_average": {"before": load_before, "after": _load_average()},
        "decode_ips": decode_ips,
    }
    reports = []
    for engine, engine_stages, engine_rates in zip(engines, stages, rates, strict=True):
        rows = _batch_rows(batch_sizes, engine_stages, engine_rates)
        summary = _summary(rows, decode_ips)
        reports.append({"engine": engine.info(), **common, "batches": rows, "summary": summary})
    return reports


def compare_reports(baseline: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``other`` over ``baseline`` per batch size: inference and end-to-end images/s ratios."""
    rows = []
    for base, row in zip(baseline["batches"], other["batches"], strict=True):
        rows.append(
            {
                "batch_size": base["batch_size"],
                "inference_ratio": row["inference_ips"] / base["inference_ips"],
                "end_to_end_ratio": row["end_to_end_ips"] / base["end_to_end_ips"],
            }
        )
    best = baseline["summary"]["best_inference_ips"]
    return {
        "baseline": baseline["engine"]["precision"],
        "other": other["engine"]["precision"],
        "batches": rows,
        "best_inference_ratio": other["summary"]["best_inference_ips"] / best,
        "best_end_to_end_ratio": other["summary"]["best_end_to_end_ips"]
        / baseline["summary"]["best_end_to_end_ips"],
    }


def format_comparison(comparison: dict[str, Any]) -> str:
    """The side-by-side ratios of :func:`compare_reports` as a table."""
    other, base = comparison["other"], comparison["baseline"]
    lines = [
        f"{other} / {base}, images/s ratio (same images, engines taking turns)",
        f"{'batch':>5} {'inference':>10} {'end-to-end':>11}",
    ]
    for row in comparison["batches"]:
        lines.append(
            f"{row['batch_size']:>5} {row['inference_ratio']:>9.2f}x "
            f"{row['end_to_end_ratio']:>10.2f}x"
        )
    lines.append(
        f"best batch: inference {comparison['best_inference_ratio']:.2f}x, "
        f"end to end {comparison['best_end_to_end_ratio']:.2f}x"
    )
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """A human-readable table of a :func:`run_bench` report."""
    info = report["engine"]
    load = report.get("load_average") or {}
    lines = [
        f"model     {info['model_name']} {info['model_version']} ({info['precision']})",
        f"provider  {info['provider']}   device: {info['device']}",
        f"threads   intra-op {info['intra_op_threads'] or 'auto'}, "
        f"inter-op {info['inter_op_threads']}, CPU streams {info.get('cpu_streams', 1)}",
        f"images    {report['images']['count']} from {report['images']['source']}",
        f"load avg  before {load.get('before')}, after {load.get('after')}",
        f"decode    {report['decode_ips']:.1f} images/s (all batch sizes)",
        "",
        "images/s by stage (median of rounds); inference also per CPU-second and its range",
        f"{'batch':>5} {'preprocess':>11} {'float NCHW':>11} {'inference':>10} "
        f"{'per CPU-s':>10} {'range':>13} {'ms/batch':>9} {'end-to-end':>11}",
    ]
    for row in report["batches"]:
        low, high = row["inference_ips_range"]
        lines.append(
            f"{row['batch_size']:>5} {row['preprocess_ips']:>11.1f} "
            f"{row['preprocess_float_nchw_ips']:>11.1f} {row['inference_ips']:>10.1f} "
            f"{row['inference_ips_per_cpu_s']:>10.1f} {f'{low:.0f}-{high:.0f}':>13} "
            f"{row['inference_batch_ms']:>9.1f} {row['end_to_end_ips']:>11.1f}"
        )
    s = report["summary"]
    lines += [
        "",
        f"best inference: batch {s['best_inference_batch_size']} at {s['best_inference_ips']:.1f} "
        f"images/s, {s['batching_speedup']:.2f}x batch {s['baseline_batch_size']}",
        f"decode+preprocess: {s['decode_plus_preprocess_ips']:.1f} images/s, "
        f"{s['cpu_side_vs_inference']:.1f}x the best inference rate",
    ]
    return "\n".join(lines)
