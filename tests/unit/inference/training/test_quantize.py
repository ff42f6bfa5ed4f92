"""INT8 graphs: ``vitrine quantize`` keeps one only if top-1 holds; the engine serves it on CPUs.

The quantisation runs here on a few Grocery Store images (min/max calibration,
the fast method) on a copy of the shipped model: these tests check the
mechanics (QDQ graph, fused integer kernels, the manifest record, the keep or
reject decision, precision selection), not the accuracy of the shipped INT8
graph, which ``vitrine quantize`` measured on the whole validation split
(figures in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.samples import sample_images
from inference.serving.decode import LOCAL_FILE_LIMITS
from inference.serving.engine import Engine
from inference.serving.errors import ModelError
from inference.serving.manifest import ModelManifest, default_model_dir
from inference.training.dataset import load_dataset
from inference.training.quantize import (
    INT8_FILE,
    QuantizeConfig,
    QuantizeReport,
    fused_kernels,
    quantize_model,
)
from tests.grocery import GROCERY, grocery_subset

CLASSES = (0, 6, 8, 14, 23, 41, 61, 71)  # apples, banana, kiwi, juice, milk, ... (classes.csv)

pytestmark = pytest.mark.skipif(
    not (GROCERY / "val.txt").is_file(), reason=f"the Grocery Store data set is not at {GROCERY}"
)


def _subset(out: Path, split: str, per_class: int) -> Path:
    return grocery_subset(out, split, CLASSES, per_class)


def _model_copy(tmp: Path) -> Path:
    """The shipped product model's FP32 graph and manifest, without any INT8 graph."""
    tmp.mkdir(parents=True)
    src = default_model_dir()
    raw = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    raw.pop("int8", None)
    shutil.copy(src / raw["file"], tmp / raw["file"])
    (tmp / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    return tmp


_FAST = QuantizeConfig(calibration_images=24, method="minmax", throughput_images=16, tries=1)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QuantizeReport]:
    root = tmp_path_factory.mktemp("quantize")
    model = _model_copy(root / "model")
    train = load_dataset(_subset(root / "data", "train", 3))
    val = load_dataset(_subset(root / "data", "val", 4))
    config = dataclasses.replace(_FAST, max_top1_drop=1.0, tries=2)
    report = quantize_model(model, train, val, config)
    return model, report


def test_a_kept_graph_is_written_and_recorded(quantized: tuple[Path, QuantizeReport]) -> None:
    model, report = quantized
    assert report.kept
    manifest = ModelManifest.load(model)  # verifies both checksums
    assert manifest.int8 is not None
    assert manifest.int8.path == model / INT8_FILE
    details = manifest.int8.details
    # Two calibration draws were scored; the better one on validation was kept.
    assert [t["seed"] for t in report.tries] == [0, 1]
    assert report.top1_int8 == max(t["top1_int8"] for t in report.tries)
    assert details["calibration"]["seed"] == report.seed
    assert details["calibration"]["method"] == "minmax"
    assert details["calibration"]["images"] == 24
    validation = details["validation"]
    assert validation["images"] == report.val_images == 4 * len(CLASSES)
    assert 0.0 <= validation["top1_int8"] <= 1.0
    assert manifest.to_dict()["int8"]["file"] == INT8_FILE


def test_onnx_runtime_runs_the_convolutions_as_integer_kernels(
    quantized: tuple[Path, QuantizeReport],
) -> None:
    model, report = quantized
    kernels = fused_kernels(model / INT8_FILE)
    # EfficientNet-Lite0 has 49 convolutions; the stem and block 0 (3) stay in float.
    assert kernels.get("QLinearConv", 0) == 49 - 3
    assert sum(n for op, n in kernels.items() if "Conv" in op and op != "QLinearConv") == 3
    assert report.kernels == kernels


def test_the_engine_serves_int8_on_the_cpu_unless_told_not_to(
    quantized: tuple[Path, QuantizeReport],
) -> None:
    model, _ = quantized
    manifest = ModelManifest.load(model)
    blobs = [p.read_bytes() for p in sample_images()]
    with (
        Engine(manifest, providers=("cpu",), warmup=False) as auto,
        Engine(manifest, providers=("cpu",), precision="fp32", warmup=False) as fp32,
    ):
        assert (auto.precision, auto.info()["graph"]) == ("int8", INT8_FILE)
        assert (fp32.precision, fp32.info()["graph"]) == ("fp32", manifest.path.name)
        a = auto.predict_bytes(blobs, LOCAL_FILE_LIMITS, with_embedding=True).ok
        b = fp32.predict_bytes(blobs, LOCAL_FILE_LIMITS, with_embedding=True).ok
    assert len(a) == len(b) == len(blobs)
    # Even this quick calibration keeps most photos' category; the embeddings stay close.
    same = sum(x.category == y.category for x, y in zip(a, b, strict=True))
    assert same >= 0.75 * len(blobs)
    ea = np.stack([np.asarray(x.embedding) for x in a])
    eb = np.stack([np.asarray(y.embedding) for y in b])
    cos = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    assert np.median(cos) > 0.95


def test_a_graph_that_loses_accuracy_is_not_kept(tmp_path: Path) -> None:
    model = _model_copy(tmp_path / "model")
    before = (model / "manifest.json").read_bytes()
    train = load_dataset(_subset(tmp_path / "data", "train", 3))
    val = load_dataset(_subset(tmp_path / "data", "val", 2))
    # A limit of -1: only an INT8 graph right where FP32 is always wrong would pass.
    report = quantize_model(model, train, val, dataclasses.replace(_FAST, max_top1_drop=-1.0))
    assert not report.kept
    assert not (model / INT8_FILE).exists()
    assert (model / "manifest.json").read_bytes() == before


def test_int8_must_exist_when_asked_for(tmp_path: Path) -> None:
    manifest = ModelManifest.load(_model_copy(tmp_path / "model"))
    with pytest.raises(ModelError) as info:
        Engine(manifest, providers=("cpu",), precision="int8", warmup=False)
    assert info.value.code == "model.no_int8"
    with pytest.raises(ValueError, match="precision"):
        Engine(manifest, providers=("cpu",), precision="int4", warmup=False)
    with Engine(manifest, providers=("cpu",), warmup=False) as engine:
        assert engine.precision == "fp32"


def test_a_changed_or_missing_int8_graph_is_refused(
    quantized: tuple[Path, QuantizeReport], tmp_path: Path
) -> None:
    model, _ = quantized
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    with (copy / INT8_FILE).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError) as info:
        ModelManifest.load(copy)
    assert info.value.code == "model.checksum_mismatch"
    (copy / INT8_FILE).unlink()
    with pytest.raises(ModelError) as info:
        ModelManifest.load(copy)
    assert info.value.code == "model.not_found"
