"""``vitrine bench all``, ``bench consume`` and ``bench cluster`` at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.tools.bench.all import bench_all_command
from streams.tools.bench.cluster import bench_cluster_command
from streams.tools.bench.consume import bench_consume_command
from tests.conftest import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# 110-230 s on the 2-core VM while 3 other test processes run; it once ran past
# the suite's 300 s when the machine was busier still.
@pytest.mark.timeout(600)
def test_bench_all_runs_every_benchmark_into_one_folder(
    kafka_stack: LocalStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", kafka_stack.bootstrap)
    monkeypatch.setenv("VITRINE_REDIS_URL", kafka_stack.redis_url)
    monkeypatch.setenv("VITRINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "2")
    out_dir = tmp_path / "bench"
    code = bench_all_command(
        out_dir, n_images=32, trials=1, workers=[2], batch_sizes=[1, 8], search_vectors=5000
    )
    assert code == 0
    for name in ("inference.json", "pipeline.json", "search.json", "inference_throughput.png",
                 "latency_cdf.png", "summary.md", "run.json"):  # fmt: skip
        assert (out_dir / name).stat().st_size > 0, name

    inference = json.loads((out_dir / "inference.json").read_text())
    assert [row["batch_size"] for row in inference["batches"]] == [1, 8]
    # The shipped model serves INT8 on CPUs; FP32 is measured beside it.
    assert inference["engine"]["precision"] == "int8"
    assert inference["baseline"]["engine"]["precision"] == "fp32"
    assert inference["comparison"]["best_inference_ratio"] > 0

    out = json.loads((out_dir / "pipeline.json").read_text())
    phases = out["phases"]
    assert list(phases) == [
        "engine alone",
        "engine + fingerprints",
        "pipeline misses",
        "pipeline cache hits",
        "pipeline backlog",
        "pipeline half rate",
        "orders live",
        "orders backlog",
        "naive baseline",
    ]
    # One trial of 32 images: the least that exercises every phase.
    assert phases["engine alone"]["events"] == phases["pipeline misses"]["events"] == 32
    assert phases["naive baseline"]["events"] == 32
    assert phases["engine + fingerprints"]["events"] == 32
    # 64 new images drained by a restarted worker; its first batch is not counted.
    assert phases["pipeline backlog"]["events"] == 64 - 32
    assert phases["pipeline cache hits"]["events"] == 32
    assert phases["orders live"]["events"] == 2000
    # The backlog counts all but the first batch of its 4,000 orders.
    assert phases["orders backlog"]["events"] == 4000 - 512
    assert all(p["per_s"] > 0 for p in phases.values())
    assert phases["pipeline misses"]["latency_ms"]["p99"] is not None
    assert len(out["per_trial"]) == 1
    assert set(out["ratios"]) == {
        "pipeline_vs_engine",
        "pipeline_vs_engine_fingerprints",
        "pipeline_vs_naive",
        "cache_hits_vs_misses",
        "backlog_vs_engine",
    }
    assert all(v > 0 for v in out["ratios"].values())
    # 2 worker processes in one group, labelling all 32 fresh images.
    assert [(r["workers"], r["events"]) for r in out["scaling"]] == [(2, 32)]
    assert out["scaling"][0]["vs_first"] == 1.0
    assert len(out["latencies_ms"]["pipeline misses"]) == 32
    summary = (out_dir / "summary.md").read_text()
    assert "pipeline / engine alone" in summary
    assert "int8 / fp32, model alone" in summary
    assert "2 worker process(es)" in summary
    search = json.loads((out_dir / "search.json").read_text())
    assert search["summary"]["vectors"] == 5000
    assert 0.0 < search["summary"]["recall@10"] <= 1.0
    assert "search: recall@10" in summary


def test_bench_consume_compares_faust_with_the_batch_consumer(
    kafka_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", kafka_stack.bootstrap)
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "2")
    assert bench_consume_command(as_json=True, n_events=1000) == 0
    out = json.loads(capsys.readouterr().out)
    for mode in ("faust iter", "faust take", "batch consumer"):
        assert out[mode]["per_s"] > 0
        assert out[mode]["cpu_us_per_event"] > 0
    assert out["batch_consumer_vs_faust_iter"] > 0


def test_bench_soak_samples_memory_latency_and_lag(
    kafka_stack: LocalStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.tools.bench.soak import bench_soak_command

    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", kafka_stack.bootstrap)
    monkeypatch.setenv("VITRINE_REDIS_URL", kafka_stack.redis_url)
    monkeypatch.setenv("VITRINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "2")
    out = tmp_path / "soak"
    assert bench_soak_command(minutes=0.4, interval_s=4.0, out_dir=out) == 0
    result = json.loads((out / "soak.json").read_text())
    assert result["capacity_per_s"] > 0
    assert result["images_per_s"] == pytest.approx(result["capacity_per_s"] / 2, rel=0.01)
    samples = result["samples"]
    assert len(samples) >= 4
    assert all(s["rss_mb"] > 100 for s in samples)  # a worker with a model loaded
    assert sum(s["labels"] for s in samples) > 0
    assert any(s["p99_ms"] is not None for s in samples)
    assert (out / "soak.png").stat().st_size > 10_000


def test_bench_cluster_measures_orders_on_one_redis_and_on_a_cluster(
    kafka_stack: LocalStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", kafka_stack.bootstrap)
    monkeypatch.setenv("VITRINE_REDIS_URL", kafka_stack.redis_url)
    monkeypatch.setenv("VITRINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "2")
    assert bench_cluster_command(as_json=True, n_products=8, n_orders=1500, trials=1) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["orders_per_s"]) == {"one redis", "redis cluster"}
    assert all(v > 0 for v in out["orders_per_s"].values())
    assert out["cluster_vs_one"] > 0
