"""``train`` end to end on the committed tiny data set, and the model it writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from inference.serving.decode import ImageLimits
from inference.serving.engine import Engine
from inference.serving.manifest import ModelManifest
from inference.training.errors import TrainError
from inference.training.torch_finetune import TailFinetuneConfig
from inference.training.trainer import TrainResult, train

from .conftest import TINY_CLASSES, tiny_config


def test_trained_model_loads_in_the_engine_and_labels_photos(
    trained: TrainResult, tiny_dataset: Path
) -> None:
    manifest = ModelManifest.load(trained.model_dir)  # checksum verified
    assert manifest.name == "tiny-grocery"
    assert manifest.version.startswith("ft-")
    assert manifest.labels == TINY_CLASSES
    # The data has coarse classes: they are the categories the worker reports.
    assert manifest.categories == ("Banana", "Apple", "Oat-Milk", "Apple")
    engine = Engine(manifest, providers=("cpu",), intra_op_threads=2, top_k=2)
    paths = [next((tiny_dataset / c).glob("*.jpg")) for c in TINY_CLASSES]
    result = engine.predict_paths(paths, ImageLimits())
    assert not result.errors
    for _path, prediction in zip(paths, result.ok, strict=True):
        assert prediction.model_name == "tiny-grocery"
        assert prediction.model_version == manifest.version
        assert len(prediction.labels) == 2
        assert prediction.labels[0][0] in TINY_CLASSES
        assert sum(p for _, p in prediction.labels) <= 1.0 + 1e-5
    # Images it was trained on: it should know them.
    right = sum(p.label == path.parent.name for path, p in zip(paths, result.ok, strict=True))
    assert right >= 3
    emb = engine.predict_paths(paths[:1], ImageLimits(), with_embedding=True).ok[0].embedding
    assert emb is not None
    assert emb.shape == (1280,)


def test_manifest_carries_training_metadata(trained: TrainResult) -> None:
    raw = json.loads((trained.model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert raw["coarse"] == ["Banana", "Apple", "Oat-Milk", "Apple"]
    t = raw["training"]
    assert t["seed"] == 7
    assert len(t["data"]["data_hash"]) == 64
    assert t["data"]["split_sizes"]["train"] + t["data"]["split_sizes"]["val"] == 24
    assert t["data"]["train_views"] == 3 * t["data"]["split_sizes"]["train"]
    assert t["head"]["chosen"] in ("linear", "mlp")
    assert set(t["head_candidates"]) == {"linear", "mlp"}
    assert 0 <= t["val_metrics"]["top1_accuracy"] <= 1
    assert t["export_check"]["max_abs_diff"] < 1e-3
    assert raw["source"]["base_model"]["name"] == "efficientnet-lite0"
    # Preprocessing is the backbone's, unchanged.
    assert raw["preprocessing"]["resize_short_side"] == 256
    assert raw["input"]["dtype"] == "uint8"


def test_same_seed_same_model_and_features_come_from_the_cache(
    trained: TrainResult, feature_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="inference.training.features"):
        again = train(tiny_config(tmp_path / "tiny-grocery", feature_cache))
    assert "computing" not in caplog.text  # every view came from the cache
    assert again.manifest.version == trained.manifest.version
    assert (tmp_path / "tiny-grocery" / "model.onnx").read_bytes() == (
        trained.model_dir / "model.onnx"
    ).read_bytes()


def test_another_seed_gives_another_version(feature_cache: Path, tmp_path: Path) -> None:
    a = train(tiny_config(tmp_path / "a", feature_cache, augmentations=1, head="linear", seed=1))
    b = train(tiny_config(tmp_path / "b", feature_cache, augmentations=1, head="linear", seed=2))
    assert a.manifest.version != b.manifest.version


def test_fine_tuning_the_last_blocks_runs_and_exports(feature_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="fine-tuning blocks is optional and needs PyTorch")
    result = train(
        tiny_config(
            tmp_path / "ft",
            feature_cache,
            head="linear",
            finetune="blocks",
            augmentations=1,
            finetune_config=TailFinetuneConfig(epochs=2, min_convs=4),
        )
    )
    ft = result.training["finetune"]
    assert ft is not None
    assert ft["convs_tuned"] >= 4
    assert len(ft["val_top1_per_epoch"]) >= 1
    # The export check compared the composed graph (tuned initializers) with the torch model.
    assert result.training["export_check"]["max_abs_diff"] < 1e-3


def test_fine_tuning_blocks_without_torch_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inference.training.trainer.torch_available", lambda: False)
    with pytest.raises(TrainError, match="needs PyTorch"):
        train(tiny_config(tmp_path / "x", None, finetune="blocks"))


def test_explicit_validation_set_and_category_file(tmp_path: Path, tiny_dataset: Path) -> None:
    categories = tmp_path / "categories.csv"
    categories.write_text(
        "Banana,produce\nGranny-Smith,produce\nPink-Lady,produce\nOatly-Oat-Milk,beverages\n",
        encoding="utf-8",
    )
    result = train(
        tiny_config(
            tmp_path / "m",
            None,
            val_data=tiny_dataset,
            categories_file=categories,
            augmentations=0,
            head="linear",
        )
    )
    assert result.manifest.categories == ("produce", "produce", "beverages", "produce")
    assert result.training["data"]["split_sizes"] == {"train": 24, "val": 24}


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="head must be one of"):
        train(tiny_config(tmp_path / "x", None, head="forest"))
