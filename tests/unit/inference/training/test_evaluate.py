"""``evaluate_model`` and the report, on the tiny data set and on hand-made predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from inference.serving.manifest import default_model_dir
from inference.serving.options import EngineOptions
from inference.training.evaluate import EvaluationResult, evaluate_model, write_report
from inference.training.metrics import score
from inference.training.trainer import TrainResult

from .test_metrics import Y_PRED, Y_TRUE, _probs_for


def test_report_files_match_hand_computed_confusion_matrix(tmp_path: Path) -> None:
    probs = _probs_for(Y_PRED, np.full(10, 0.6))
    names = ("apple", "pear", "milk")
    result = EvaluationResult(
        model_name="m",
        model_version="v",
        model_dir="d",
        data="data",
        level="labels",
        class_names=names,
        y_true=Y_TRUE,
        probs=probs,
        metrics=score(probs, Y_TRUE, names, coarse_of_class=("fruit", "fruit", "dairy")),
        coarse_of_class=("fruit", "fruit", "dairy"),
    )
    paths = write_report(result, tmp_path)
    assert {p.name for p in paths} == {
        "metrics.json",
        "per_class.csv",
        "per_class.md",
        "report.md",
        "risk_coverage.png",
        "confusion_matrix.png",
        "per_class_f1.png",
    }
    with (tmp_path / "per_class.csv").open(newline="") as fh:
        rows = {r["class"]: r for r in csv.DictReader(fh)}
    assert rows["apple"] == {
        "class": "apple",
        "coarse": "fruit",
        "support": "4",
        "predicted": "4",
        "precision": "0.7500",
        "recall": "0.7500",
        "f1": "0.7500",
    }
    assert rows["pear"]["precision"] == "0.6667"
    assert rows["pear"]["recall"] == "0.5000"
    assert rows["pear"]["f1"] == "0.5714"
    assert rows["milk"]["f1"] == "0.8000"
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["top1_accuracy"] == pytest.approx(0.7)
    # Coarse: truths fruit x8, dairy x2; predictions map 0,1 -> fruit, 2 -> dairy.
    # Wrong coarse: true pear predicted milk (1 image). 9 of 10.
    assert metrics["coarse_accuracy"] == pytest.approx(0.9)
    for png in ("confusion_matrix.png", "per_class_f1.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text()
    assert "| top-1 accuracy | 70.0% |" in report
    assert "| pear | fruit | 4 | 3 | 0.667 | 0.500 | 0.571 |" in report


def test_evaluate_trained_model_on_tiny_data(
    trained: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    result = evaluate_model(
        trained.model_dir,
        tiny_dataset,
        options=EngineOptions(providers=("cpu",), intra_op_threads=2, max_batch_size=8),
        throughput_images=16,
        throughput_baselines=[default_model_dir()],
        progress=False,
    )
    m = result.metrics
    assert result.level == "labels"
    assert m["n_images"] == 24
    assert m["top1_accuracy"] >= 0.75  # mostly images it was trained on
    assert m["top5_accuracy"] == 1.0  # four classes
    assert 0 <= m["ece"] <= 1
    assert "coarse_accuracy" in m
    assert m["coarse_accuracy"] >= m["top1_accuracy"]
    assert [t.model.split()[0] for t in result.throughput] == ["tiny-grocery", "grocery-store"]
    assert all(t.images == 16 and t.images_per_s > 0 for t in result.throughput)
    write_report(result, tmp_path)
    assert (tmp_path / "report.md").read_text().count("images/s") >= 1


def test_evaluate_shipped_model_on_categories_with_a_class_map(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    class_map = tmp_path / "map.csv"
    class_map.write_text(
        "Banana,produce\nGranny-Smith,produce\nPink-Lady,produce\nOatly-Oat-Milk,beverages\n",
        encoding="utf-8",
    )
    result = evaluate_model(
        default_model_dir(),
        tiny_dataset,
        class_map=class_map,
        options=EngineOptions(providers=("cpu",), intra_op_threads=2),
        throughput_images=0,
        progress=False,
    )
    assert result.level == "categories"
    assert "produce" in result.class_names
    assert result.metrics["n_classes_present"] == 2
    # Each row sums the probabilities of a category's ImageNet labels.
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-4)
    assert result.metrics["top1_accuracy"] > 0.5


def test_evaluate_refuses_classes_the_model_does_not_know(
    trained: TrainResult, tmp_path: Path, tiny_dataset: Path
) -> None:
    data = tmp_path / "data"
    for cls in ("Banana", "Kumquat"):
        (data / cls).mkdir(parents=True)
        (data / cls / "a.jpg").write_bytes(
            next((tiny_dataset / "Banana").glob("*.jpg")).read_bytes()
        )
    with pytest.raises(ValueError, match="Kumquat"):
        evaluate_model(trained.model_dir, data, throughput_images=0, progress=False)
