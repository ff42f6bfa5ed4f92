"""The pipeline benchmark's helpers: steady-state rates, CPU accounting, the image host."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from streams.tools.bench.all import DOC_BEGIN, DOC_END, doc_block, write_doc
from streams.tools.bench.pipeline import CpuSample, _cpu_use, _image_host, _steady


def test_the_steady_rate_leaves_out_the_first_and_last_tenth() -> None:
    # 100 outputs: a slow start (group joins), 80 at 100/s, a slow tail.
    stamps = [0] * 10 + [1000 + 10 * i for i in range(81)] + [60_000] * 9
    phase = _steady("x", stamps)
    # From the 11th output to the 90th: 79 intervals of 10 ms.
    assert phase.events == 79
    assert phase.seconds == pytest.approx(0.79)
    assert phase.per_s == pytest.approx(100.0)


def test_cpu_use_takes_the_samples_nearest_the_window() -> None:
    samples = [CpuSample(0, 0.0, 0.0), CpuSample(1000, 0.9, 1.5), CpuSample(2000, 1.8, 3.0)]
    assert _cpu_use(samples, 50, 1950) == {
        "seconds": 2.0,
        "workers_cpu_s": 1.8,
        "other_cpu_s": 1.2,
    }
    # One sample, or a window inside one sampling interval: nothing to say.
    assert _cpu_use(samples[:1], 0, 1000) == {}
    assert _cpu_use(samples, 900, 1100) == {}


def test_a_cpu_sample_counts_this_process_and_the_machine() -> None:
    before = CpuSample.now([os.getpid()])
    sum(i * i for i in range(2_000_000))  # burn some CPU
    after = CpuSample.now([os.getpid(), 2**22 + 1])  # a pid that is gone counts 0
    assert after.processes_s > before.processes_s
    assert after.machine_s - before.machine_s >= after.processes_s - before.processes_s - 0.02


def test_the_image_host_serves_its_folder_over_keep_alive_http(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8photo")
    with _image_host(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base}/a.jpg", timeout=5) as resp:
            assert resp.read() == b"\xff\xd8photo"
            assert resp.headers["Content-Length"] == "7"


def test_the_performance_page_shows_the_figures_of_its_run_files() -> None:
    # docs/PERFORMANCE.md's table is `vitrine bench doc`'s rendering of the files
    # in docs/performance/: a new run's files and the page change together.
    root = Path(__file__).resolve().parents[4]
    page = (root / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    assert doc_block(root / "docs" / "performance") in page


def test_bench_doc_rewrites_only_its_block(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[4]
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text(f"# Performance\n\nbefore\n\n{DOC_BEGIN}\nold figures\n{DOC_END}\n\nafter\n")
    assert write_doc(doc, root / "docs" / "performance")
    text = doc.read_text()
    assert text.startswith("# Performance\n\nbefore\n\n")
    assert text.endswith("\n\nafter\n")
    assert "old figures" not in text
    assert "| pipeline / engine alone (median of trials) |" in text
    assert not write_doc(doc, root / "docs" / "performance")  # already up to date
    doc.write_text("no block here\n")
    with pytest.raises(ValueError, match="no block"):
        write_doc(doc, root / "docs" / "performance")
