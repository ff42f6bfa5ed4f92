"""``vitrine bench all --out DIR``: every benchmark in one run, into one folder.

1. **inference**: decode, preprocess, model and end to end per batch size, for
   the served graph and, when that is INT8, the FP32 graph taking turns with it
   (``inference.json``, ``inference_throughput.png``);
2. **pipeline**: engine alone, the worker (misses, cache hits, half rate),
   orders live and from a backlog, the naive baseline, and 1, 2, ... worker
   processes (``pipeline.json``, ``latency_cdf.png``; the scaling rows are in
   ``pipeline.json`` and ``summary.md``);
3. **search**: the visual-search index, when this build has one
   (``search.json``).

``summary.md`` puts the headline figures and ratios in one table, with the
machine and the command. ``vitrine bench doc`` writes the same table into
``docs/PERFORMANCE.md`` from the files of the run in ``docs/performance/``, so
the page's figures are the files' (a unit test checks that they agree).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.serving.bench import DEFAULT_BATCH_SIZES
from streams.settings import get_settings
from streams.tools.bench.inference import bench_inference_reports, inference_report
from streams.tools.bench.pipeline import Phase, run_pipeline_bench
from streams.tools.search import DEFAULT_DATA

__all__ = ["bench_all_command", "doc_block", "summary_rows", "write_doc"]


def _machine(device: str) -> dict[str, Any]:
    """The machine, as the engine describes its device, and the CPUs this process may use."""
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "device": device,
        "cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _plot_inference(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in [report.get("baseline"), report]:
        if run is None:
            continue
        precision = run["engine"]["precision"]
        sizes = [row["batch_size"] for row in run["batches"]]
        ax.plot(sizes, [r["inference_ips"] for r in run["batches"]], "o-",
                label=f"{precision} model alone")  # fmt: skip
        ax.plot(sizes, [r["end_to_end_ips"] for r in run["batches"]], "s--",
                label=f"{precision} decode + preprocess + model")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title("Inference throughput by batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_latency(phases: Sequence[Phase], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for phase in phases:
        if not phase.latencies_ms:
            continue
        lat = np.sort(np.asarray(phase.latencies_ms))
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=phase.name)
    ax.set_xscale("log")
    ax.set_xlabel("publish -> labelled/enriched output (ms)")
    ax.set_ylabel("share of events")
    ax.set_title("Pipeline latency, cumulative")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _search(out_dir: Path, n_vectors: int, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The search benchmark (it needs the data set's photos for its real descriptors)."""
    from streams.tools.search import run_search_bench  # noqa: PLC0415

    if not (DEFAULT_DATA / "train.txt").is_file():
        say(f"search: skipped, its real descriptors come from {DEFAULT_DATA}, not here")
        return None
    say("search index (100,000 vectors) ...")
    result = run_search_bench(n_vectors)
    (out_dir / "search.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def summary_rows(
    inference: dict[str, Any], pipeline: dict[str, Any], search: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """(figure, value) rows of the headline numbers."""
    phases, ratios = pipeline["phases"], pipeline["ratios"]
    rows = [
        ("model", f"{inference['engine']['model_name']} {inference['engine']['model_version']}"),
        ("served precision", inference["engine"]["precision"]),
        ("best model-alone images/s", f"{inference['summary']['best_inference_ips']:.1f} "
         f"(batch {inference['summary']['best_inference_batch_size']})"),
    ]  # fmt: skip
    if "comparison" in inference:
        c = inference["comparison"]
        rows += [
            (f"{c['other']} / {c['baseline']}, model alone", f"{c['best_inference_ratio']:.2f}x"),
            (f"{c['other']} / {c['baseline']}, end to end", f"{c['best_end_to_end_ratio']:.2f}x"),
        ]
    rows += [
        ("engine alone, images/s", f"{phases['engine alone']['per_s']}"),
        ("pipeline misses, listings/s", f"{phases['pipeline misses']['per_s']}"),
        ("engine + fingerprints, images/s", f"{phases['engine + fingerprints']['per_s']}"),
        ("pipeline / engine alone (median of trials)", f"{ratios['pipeline_vs_engine']:.3f}"),
        ("pipeline / engine + fingerprints (median of trials)",
         f"{ratios['pipeline_vs_engine_fingerprints']:.3f}"),
        ("pipeline backlog (worker alone), listings/s", f"{phases['pipeline backlog']['per_s']}"),
        ("pipeline backlog / engine alone", f"{ratios['backlog_vs_engine']:.3f}"),
        ("pipeline backlog / engine + fingerprints",
         f"{ratios['backlog_vs_engine_fingerprints']:.3f}"),
        ("backlog by file:// URI, listings/s (/ inline)",
         f"{phases['pipeline backlog, file://']['per_s']} ({ratios['file_uri_vs_inline']:.3f})"),
        ("backlog by http:// URI, listings/s (/ inline)",
         f"{phases['pipeline backlog, http://']['per_s']} ({ratios['http_uri_vs_inline']:.3f})"),
        ("pipeline / naive (median of trials)", f"{ratios['pipeline_vs_naive']:.2f}x"),
        ("pipeline / naive with the worker's model stage (median of trials)",
         f"{ratios['pipeline_vs_naive_model_stage']:.2f}x"),
        ("cache hits / misses", f"{ratios['cache_hits_vs_misses']}x"),
        ("half-rate latency p50 / p99 ms",
         f"{phases['pipeline half rate']['latency_ms']['p50']} / "
         f"{phases['pipeline half rate']['latency_ms']['p99']}"),
        ("orders enriched/s, live / backlog",
         f"{phases['orders live']['per_s']} / {phases['orders backlog']['per_s']}"),
    ]  # fmt: skip
    for row in pipeline.get("scaling", []):
        for kind in ("listings", "orders"):
            rows.append((f"{row['workers']} pinned worker(s), {kind}/s (backlog)",
                         f"{row[kind]['per_s']} ({row[kind]['vs_first']}x)"))  # fmt: skip
    if search:
        for key, value in search.get("summary", {}).items():
            rows.append((f"search: {key}", str(value)))
    return rows


def _summary_table(meta: dict[str, Any], rows: list[tuple[str, str]]) -> list[str]:
    """The run (command, time, machine) and its headline figures, as Markdown lines."""
    return [
        f"- command: `{meta['command']}`",
        f"- when: {meta['started']} ({meta['seconds']:.0f} s)",
        f"- machine: {meta['machine']['device']}, {meta['machine']['cpus']} CPUs usable, "
        f"Python {meta['machine']['python']}",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]


def _write_summary(out_dir: Path, meta: dict[str, Any], rows: list[tuple[str, str]]) -> Path:
    lines = [
        "# vitrine bench all",
        "",
        *_summary_table(meta, rows),
        "",
        "Files: inference.json, pipeline.json, inference_throughput.png, latency_cdf.png"
        + (", search.json" if (out_dir / "search.json").exists() else ""),
    ]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: The block of docs/PERFORMANCE.md that ``vitrine bench doc`` writes from a run's files.
DOC_BEGIN = "<!-- figures of `vitrine bench all`: written by `vitrine bench doc`, do not edit -->"
DOC_END = "<!-- end of the figures of `vitrine bench all` -->"


def doc_block(out_dir: Path) -> str:
    """The figures of the ``bench all`` run in ``out_dir``, read from its files, as Markdown."""

    def load(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((out_dir / name).read_text(encoding="utf-8"))
        return data

    search = load("search.json") if (out_dir / "search.json").exists() else None
    rows = summary_rows(load("inference.json"), load("pipeline.json"), search)
    return "\n".join([DOC_BEGIN, *_summary_table(load("run.json"), rows), DOC_END])


def write_doc(doc: Path, out_dir: Path) -> bool:
    """Replace the figures block of ``doc`` with ``out_dir``'s; True if it changed.

    Raises ValueError when ``doc`` has no such block (its two marker lines).
    """
    text = doc.read_text(encoding="utf-8")
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{doc} has no block between {DOC_BEGIN!r} and {DOC_END!r}")
    new = text[:begin] + doc_block(out_dir) + text[end + len(DOC_END) :]
    if new == text:
        return False
    doc.write_text(new, encoding="utf-8")
    return True


def bench_all_command(
    out_dir: Path,
    *,
    n_images: int,
    trials: int,
    workers: Sequence[int],
    batch_sizes: Sequence[int] | None = None,
    search_vectors: int = 100_000,
) -> int:
    """Run every benchmark; write JSON, plots and summary.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    say("inference (served graph, and FP32 beside an INT8 one) ...")
    reports = bench_inference_reports(settings, batch_sizes=batch_sizes or DEFAULT_BATCH_SIZES)
    inference = inference_report(reports)
    (out_dir / "inference.json").write_text(json.dumps(inference, indent=2), encoding="utf-8")
    _plot_inference(inference, out_dir / "inference_throughput.png")
    pipeline, phases = run_pipeline_bench(
        settings, n_images=n_images, trials=trials, workers=workers, say=say
    )
    pipeline["latencies_ms"] = {p.name: p.latencies_ms for p in phases if p.latencies_ms}
    (out_dir / "pipeline.json").write_text(json.dumps(pipeline, indent=2), encoding="utf-8")
    _plot_latency(phases, out_dir / "latency_cdf.png")
    search = _search(out_dir, search_vectors, say)
    meta = {
        "command": " ".join(["vitrine", *sys.argv[1:]]) if sys.argv else "vitrine bench all",
        "started": started,
        "seconds": time.monotonic() - t0,
        "machine": _machine(inference["engine"]["device"]),
    }
    rows = summary_rows(inference, pipeline, search)
    (out_dir / "run.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    path = _write_summary(out_dir, meta, rows)
    print(path.read_text(encoding="utf-8"))
    return 0
