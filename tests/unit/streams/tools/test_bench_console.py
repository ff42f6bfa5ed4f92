"""``vitrine bench console`` serves a filled console and reports every page it timed."""

from __future__ import annotations

import json
from pathlib import Path

from streams.tools.bench.console import bench_console_command


def test_a_small_run_writes_every_page(tmp_path: Path) -> None:
    bench_console_command(as_json=True, n_items=120, requests=3, out_dir=tmp_path)
    report = json.loads((tmp_path / "console.json").read_text())
    assert report["items"] == 120
    assert set(report["pages"]) == {
        "first page", "last page", "flag filter", "category filter", "seller filter"
    }  # fmt: skip
    for page in report["pages"].values():
        assert page["p95_ms"] >= page["p50_ms"] > 0
        assert page["bytes"] > 1000
