"""Shared fixtures: the shipped model's manifest and one CPU engine per test session."""

from __future__ import annotations

import pytest

from inference.engine import Engine
from inference.manifest import ModelManifest, default_model_dir


@pytest.fixture(scope="session")
def manifest() -> ModelManifest:
    return ModelManifest.load(default_model_dir())


@pytest.fixture(scope="session")
def engine(manifest: ModelManifest) -> Engine:
    # Two threads: the CI runners have two cores.
    return Engine(manifest, providers=("cpu",), intra_op_threads=2, top_k=5)
