"""Shared fixtures: the shipped models' manifests and one CPU engine per model and session.

``manifest``/``engine`` are the default (the Grocery Store product model);
``imagenet_manifest``/``imagenet_engine`` the ImageNet generalist shipped beside it.
"""

from __future__ import annotations

import pytest

from inference.serving.engine import Engine
from inference.serving.manifest import IMAGENET_MODEL, ModelManifest, default_model_dir


@pytest.fixture(scope="session")
def manifest() -> ModelManifest:
    return ModelManifest.load(default_model_dir())


@pytest.fixture(scope="session")
def engine(manifest: ModelManifest) -> Engine:
    # Two threads: the CI runners have two cores.
    return Engine(manifest, providers=("cpu",), intra_op_threads=2, top_k=5)


@pytest.fixture(scope="session")
def imagenet_manifest() -> ModelManifest:
    return ModelManifest.load(default_model_dir(IMAGENET_MODEL))


@pytest.fixture(scope="session")
def imagenet_engine(imagenet_manifest: ModelManifest) -> Engine:
    return Engine(imagenet_manifest, providers=("cpu",), intra_op_threads=2, top_k=5)
