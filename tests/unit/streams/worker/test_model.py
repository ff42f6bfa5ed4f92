"""One way to build an engine: the worker's settings, as options every tool takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inference.serving.manifest import ModelManifest, default_model_dir
from streams.settings import Settings, get_settings
from streams.tools.train import evaluate_command
from streams.worker.model import build_engine, engine_options

TINY = Path(__file__).parents[3] / "fixtures" / "tiny_dataset"


def test_options_carry_every_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_EXECUTION_PROVIDERS", "cpu")
    monkeypatch.setenv("VITRINE_INTRA_OP_THREADS", "1")
    monkeypatch.setenv("VITRINE_PRECISION", "fp32")
    monkeypatch.setenv("VITRINE_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("VITRINE_CONFIDENCE_THRESHOLD", "0.99")
    monkeypatch.setenv("VITRINE_KIND_THRESHOLD", "0.25")
    options = engine_options(Settings())
    assert options.providers == ("cpu",)
    assert (options.intra_op_threads, options.precision, options.max_batch_size) == (1, "fp32", 4)
    assert options.thresholds.confidence_threshold == 0.99
    assert options.thresholds.kind_threshold == 0.25
    assert options.thresholds.ood_threshold is None  # unset: the manifest's
    manifest = ModelManifest.load(default_model_dir())
    with build_engine(Settings(), warmup=False) as engine:
        assert engine.precision == "fp32"
        assert engine.max_batch_size == 4
        assert engine.review_thresholds.confidence_threshold == 0.99
        assert engine.review_thresholds.kind_threshold == 0.25
        assert engine.review_thresholds.ood_threshold == manifest.ood_threshold


def _evaluate_review(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    get_settings.cache_clear()
    try:
        code = evaluate_command(
            default_model_dir(), TINY, throughput_images=0, as_json=True, progress=False
        )
    finally:
        get_settings.cache_clear()
    assert code == 0
    review: dict[str, Any] = json.loads(capsys.readouterr().out)["metrics"]["review"]
    return review


def test_evaluate_scores_the_rule_the_worker_serves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vitrine evaluate`` honours the worker's threshold settings (it used to ignore them)."""
    monkeypatch.setenv("VITRINE_EXECUTION_PROVIDERS", "cpu")
    monkeypatch.setenv("VITRINE_INTRA_OP_THREADS", "1")
    shipped = _evaluate_review(capsys)
    assert shipped["thresholds"]["confidence_threshold"] is None  # the manifest sets none
    assert shipped["flags"]["low_confidence"] == 0.0
    monkeypatch.setenv("VITRINE_CONFIDENCE_THRESHOLD", "0.999")
    strict = _evaluate_review(capsys)
    assert strict["thresholds"]["confidence_threshold"] == 0.999
    # Under that bar most of these photos are low_confidence, and all of those are routed.
    assert strict["flags"]["low_confidence"] >= 0.5
    assert strict["routed"] >= strict["flags"]["low_confidence"]
    assert strict["routed"] > shipped["routed"]
