"""``vitrine bench inference``: its report and the options it refuses."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from streams.settings import ModelSettings, Settings
from streams.tools.bench.inference import run_bench_inference


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    model = ModelSettings(execution_providers="cpu", intra_op_threads=2, max_batch_size=4)
    return Settings(model=model, state_dir=tmp_path)


def test_bench_command_json(settings: Settings) -> None:
    out = io.StringIO()
    code = run_bench_inference(
        as_json=True, batch_sizes=[1, 2], model_dir=None, images_dir=None,
        settings=settings, min_seconds=0.0, out=out,
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.getvalue())
    assert [row["batch_size"] for row in report["batches"]] == [1, 2]
    assert report["engine"]["provider"] == "cpu"


def test_bench_command_rejects_bad_options(settings: Settings, tmp_path: Path) -> None:
    assert (
        run_bench_inference(
            as_json=False, batch_sizes=[0], model_dir=None, images_dir=None, settings=settings
        )
        == 2
    )
    assert (
        run_bench_inference(
            as_json=False,
            batch_sizes=None,
            model_dir=None,
            images_dir=tmp_path / "x",
            settings=settings,
        )
        == 2
    )
