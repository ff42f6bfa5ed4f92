"""The two CLI entry points: exit codes, printed summary, files written."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.tools.train import evaluate_command, train_command


def test_train_then_evaluate_commands(
    tiny_dataset: Path, feature_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    code = train_command(
        tiny_dataset,
        model_dir,
        seed=7,
        epochs=10,
        head="linear",
        augmentations=1,
        finetune="none",
        cache_dir=feature_cache,
        progress=False,
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"VITRINE_MODEL_PATH={model_dir}" in out
    assert "val: top-1" in out
    report = tmp_path / "report"
    code = evaluate_command(
        model_dir, tiny_dataset, report, throughput_images=8, compare_default=True, progress=False
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| top-1 accuracy |" in out
    assert "grocery-store" in out  # the shipped model's speed, measured alongside
    assert (report / "confusion_matrix.png").is_file()


def test_commands_report_bad_input_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_command(tmp_path / "missing", tmp_path / "out", progress=False) == 2
    assert "does not exist" in capsys.readouterr().err
    assert evaluate_command(tmp_path / "no-model", tmp_path, progress=False) == 2
    assert "manifest.json" in capsys.readouterr().err
