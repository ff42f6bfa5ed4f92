"""The shipped model's manifest, manifest validation, and the label/category data files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from inference.errors import ModelError
from inference.export import build_manifest
from inference.manifest import MANIFEST_FILE, ModelManifest, default_model_dir, sha256_file
from inference.taxonomy import OTHER, imagenet_classes, product_categories


def test_shipped_manifest_matches_the_committed_model(manifest: ModelManifest) -> None:
    assert manifest.name == "efficientnet-lite0"
    assert manifest.path == default_model_dir() / "model.onnx"
    assert hashlib.sha256(manifest.path.read_bytes()).hexdigest() == manifest.sha256
    assert manifest.input_size == (224, 224)
    assert (manifest.input_layout, manifest.input_dtype, manifest.colour_order) == (
        "NHWC",
        "uint8",
        "RGB",
    )
    assert manifest.normalisation_in_graph
    assert (manifest.resize_short_side, manifest.mean, manifest.std) == (
        256,
        (127.0,) * 3,
        (128.0,) * 3,
    )
    assert (manifest.probabilities_output, manifest.embedding_output) == (
        "probabilities",
        "embedding",
    )
    assert manifest.embedding_size == 1280
    assert manifest.num_classes == 1000 == len(manifest.categories)
    assert manifest.license == "Apache-2.0"
    assert 15 < manifest.path.stat().st_size / 2**20 < 25  # fp32 EfficientNet-Lite0, ~18 MB


def test_shipped_manifest_agrees_with_the_data_files(manifest: ModelManifest) -> None:
    """Editing data/imagenet_categories.tsv needs `python -m inference.export --manifest-only`."""
    rebuilt = build_manifest(default_model_dir())
    assert rebuilt.labels == manifest.labels
    assert rebuilt.categories == manifest.categories
    assert rebuilt.sha256 == manifest.sha256


def test_every_imagenet_class_maps_to_a_known_category() -> None:
    classes = imagenet_classes()
    known = product_categories()
    assert len(classes) == 1000
    assert [c.index for c in classes] == list(range(1000))
    assert len({c.wnid for c in classes}) == 1000
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert len({c.label for c in classes}) == 1000, "display labels must be unique"
    assert all(c.category in known for c in classes)
    assert 10 <= len(known) <= 20
    # Every category is reachable from some class (else it is dead taxonomy).
    assert {c.category for c in classes} == set(known)


def test_animals_and_scenes_are_other_and_products_are_not() -> None:
    by_label = {c.label: c.category for c in imagenet_classes()}
    assert all(c.category == OTHER for c in imagenet_classes()[:398])  # 0-397: animals
    for label in (
        "alp",
        "seashore",
        "volcano",
        "grocery store",
        "airliner",
        "daisy",
        "scuba diver",
    ):
        assert by_label[label] == OTHER, label
    expected = {
        "banana": "produce", "bell pepper": "produce", "Granny Smith": "produce",
        "pizza": "packaged-food", "red wine": "beverages", "running shoe": "footwear",
        "jersey": "apparel", "laptop": "electronics", "lipstick": "beauty", "wok": "kitchen",
        "studio couch": "furniture", "teddy": "toys", "tennis ball": "sports",
        "comic book": "books", "necklace": "accessories", "car wheel": "automotive",
        "power drill": "tools", "muzzle": "pets", "violin": "musical-instruments",
        "crib": "baby", "table lamp": "home",
    }  # fmt: skip
    for label, category in expected.items():
        assert by_label[label] == category, label


def test_duplicate_wordnet_names_get_distinct_labels() -> None:
    labels = [c.label for c in imagenet_classes()]
    assert (labels[134], labels[517]) == ("crane (bird)", "crane (machine)")
    assert (labels[638], labels[639]) == ("maillot", "tank suit")


# ----------------------------------------------------------------------------- validation


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped model directory."""
    target = tmp_path / "model"
    shutil.copytree(default_model_dir(), target)
    return target


def _edit(model_dir: Path, **changes: object) -> None:
    path = model_dir / MANIFEST_FILE
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        elif value is None:
            raw.pop(section)
        else:
            raw[section] = value
    path.write_text(json.dumps(raw))


def test_load_accepts_dir_manifest_or_onnx_path(model_copy: Path) -> None:
    for path in (model_copy, model_copy / MANIFEST_FILE, model_copy / "model.onnx"):
        assert ModelManifest.load(path).model_dir == model_copy


def test_round_trip(model_copy: Path, manifest: ModelManifest) -> None:
    loaded = ModelManifest.load(model_copy)
    again = ModelManifest.from_dict(json.loads(json.dumps(loaded.to_dict())), model_dir=model_copy)
    assert again == loaded
    assert loaded.replace(path=manifest.path) == manifest


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        ModelManifest.load(tmp_path / "nowhere")
    assert info.value.code == "model.not_found"
    assert "VITRINE_MODEL_PATH" in info.value.message


def test_checksum_mismatch(model_copy: Path) -> None:
    with (model_copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError) as info:
        ModelManifest.load(model_copy)
    assert info.value.code == "model.checksum_mismatch"
    assert ModelManifest.load(model_copy, verify_checksum=False).name == "efficientnet-lite0"


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"name": None}, "missing field 'name'"),
        ({"format_version": 2}, "format_version"),
        ({"sha256": "abc"}, "64 hex digits"),
        ({"file": "../model.onnx"}, "inside the model directory"),
        ({"labels": ["a", "b"]}, "2 labels but 1000 categories"),
        ({"input__layout": "CHW"}, "'layout' must be one of NHWC, NCHW"),
        ({"input__height": 0}, "'height' must be an integer >= 1"),
        ({"preprocessing__std": [1, 0, 1]}, "'std' must be 3 finite numbers > 0"),
        ({"preprocessing__resize_short_side": 100}, "smaller than the 224x224 crop"),
        ({"preprocessing__crop": "random"}, "'crop' must be 'center'"),
        ({"outputs__embedding": 3}, "'outputs.embedding'"),
        ({"source": []}, "'source' must be a JSON object"),
        ({"preprocessing__normalisation_in_graph": False}, "uint8 input cannot carry"),
        ({"preprocessing__normalisation_in_graph": "yes"}, "must be true or false"),
    ],
)
def test_invalid_manifests_name_the_problem(
    model_copy: Path, changes: dict[str, object], phrase: str
) -> None:
    _edit(model_copy, **changes)
    with pytest.raises(ModelError) as info:
        ModelManifest.load(model_copy)
    assert info.value.code == "model.invalid_manifest"
    assert phrase in info.value.message
    assert str(model_copy / MANIFEST_FILE) in info.value.message


def test_unreadable_manifest(model_copy: Path) -> None:
    (model_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError) as info:
        ModelManifest.load(model_copy)
    assert info.value.code == "model.invalid_manifest"


def test_onnx_file_missing(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    with pytest.raises(ModelError) as info:
        ModelManifest.load(model_copy)
    assert info.value.code == "model.not_found"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"vitrine" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"vitrine" * 1000).hexdigest()
