"""The benchmark returns a complete JSON-able report (kept short here: tiny time budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.samples import sample_images
from inference.serving.bench import format_report, run_bench
from inference.serving.engine import Engine


def test_report_shape(engine: Engine) -> None:
    report = run_bench(engine, batch_sizes=[1, 4], min_seconds=0.0, rounds=1)
    json.dumps(report)  # JSON-able
    assert report["engine"]["provider"] == "cpu"
    assert report["images"]["count"] == len(sample_images())
    assert report["decode_ips"] > 0
    assert [row["batch_size"] for row in report["batches"]] == [1, 4]
    for row in report["batches"]:
        for key in (
            "preprocess_ips",
            "preprocess_float_nchw_ips",
            "inference_ips",
            "end_to_end_ips",
        ):
            assert row[key] > 0
    summary = report["summary"]
    assert summary["best_inference_batch_size"] in (1, 4)
    assert summary["batching_speedup"] > 0
    assert summary["cpu_side_vs_inference"] > 0
    text = format_report(report)
    assert "provider  cpu" in text
    assert "best inference" in text


def test_images_from_a_folder_skip_undecodable_files(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(sample_images()[0].read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    report = run_bench(engine, images=[tmp_path], batch_sizes=[2], min_seconds=0.0, rounds=1)
    assert report["images"]["count"] == 1
    (tmp_path / "a.jpg").unlink()
    with pytest.raises(ValueError, match="could be decoded"):
        run_bench(engine, images=[tmp_path], batch_sizes=[1], min_seconds=0.0, rounds=1)


def test_bad_batch_sizes(engine: Engine) -> None:
    with pytest.raises(ValueError, match="batch sizes"):
        run_bench(engine, batch_sizes=[0], min_seconds=0.0, rounds=1)
