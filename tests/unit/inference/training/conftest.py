"""Fixtures for the training tests: the committed tiny data set and a trained model on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.training.trainer import TrainConfig, TrainResult, train

TINY = Path(__file__).resolve().parents[3] / "fixtures" / "tiny_dataset"
TINY_CLASSES = ("Banana", "Granny-Smith", "Oatly-Oat-Milk", "Pink-Lady")


@pytest.fixture(scope="session")
def tiny_dataset() -> Path:
    return TINY


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features")


def tiny_config(out: Path, cache: Path | None, **changes: object) -> TrainConfig:
    """Small and fast: 2 augmented views, few epochs, 2 threads (CI has two cores)."""
    base: dict[str, object] = {
        "data": TINY,
        "out": out,
        "val_fraction": 0.2,
        "augmentations": 2,
        "epochs": 15,
        "finetune": "none",
        "cache_dir": cache,
        "intra_op_threads": 2,
        "progress": False,
        "seed": 7,
    }
    base.update(changes)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, feature_cache: Path) -> TrainResult:
    """One model trained on the tiny data set, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("models") / "tiny-grocery"
    result = train(tiny_config(out, feature_cache))
    yield result
    shutil.rmtree(out, ignore_errors=True)
