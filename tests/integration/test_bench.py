"""``vitrine bench consume``, ``bench soak`` and ``bench cluster`` at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.tools.bench.cluster import bench_cluster_command
from streams.tools.bench.consume import bench_consume_command
from tests.conftest import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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


def test_bench_soak_samples_memory_latency_and_lag(bench_env: Path) -> None:
    from streams.tools.bench.soak import bench_soak_command

    out = bench_env / "soak"
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
    bench_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_cluster_command(as_json=True, n_products=8, n_orders=1500, trials=1) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["orders_per_s"]) == {"one redis", "redis cluster"}
    assert all(v > 0 for v in out["orders_per_s"].values())
    assert out["cluster_vs_one"] > 0
