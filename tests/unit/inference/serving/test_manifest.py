"""The shipped model's manifest, manifest validation, and the label/category data files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from inference.serving.errors import ModelError
from inference.serving.manifest import (
    DEFAULT_MODEL,
    IMAGENET_MODEL,
    MANIFEST_FILE,
    ModelManifest,
    default_model_dir,
    sha256_file,
)
from inference.serving.taxonomy import OTHER, imagenet_classes, product_categories
from inference.training.export import build_manifest

GROCERY_CATEGORIES = (
    Path(__file__).resolve().parents[4] / "inference/serving/data/grocery_categories.csv"
)


def _grocery_rows() -> dict[str, str]:
    rows = [line.split(",") for line in GROCERY_CATEGORIES.read_text().splitlines()]
    return {r[0]: r[1] for r in rows[1:] if r and not r[0].startswith("#") and r[0] != "class"}


def test_the_default_is_the_grocery_store_model(manifest: ModelManifest) -> None:
    assert manifest.name == DEFAULT_MODEL == "grocery-store"
    assert manifest.path == default_model_dir() / "model.onnx"
    assert hashlib.sha256(manifest.path.read_bytes()).hexdigest() == manifest.sha256
    assert manifest.num_classes == 81 == len(manifest.labels) == len(set(manifest.labels))
    coarse = json.loads((default_model_dir() / MANIFEST_FILE).read_text())["coarse"]
    assert len(coarse) == 81
    assert len(set(coarse)) == 43
    assert manifest.input_size == (224, 224)
    assert (manifest.input_layout, manifest.input_dtype) == ("NHWC", "uint8")
    assert (manifest.ood_output, manifest.embedding_size) == ("ood_score", 1280)
    assert manifest.license == "Apache-2.0"
    assert 10 < manifest.path.stat().st_size / 2**20 < 20  # fp32 EfficientNet-Lite0 body
    assert manifest.source["base_model"]["name"] == IMAGENET_MODEL


def test_grocery_labels_and_categories_agree_with_the_data_file(manifest: ModelManifest) -> None:
    rows = _grocery_rows()
    assert len(rows) == 81
    assert set(manifest.labels) == set(rows)
    assert list(manifest.categories) == [rows[label] for label in manifest.labels]
    assert set(manifest.categories) == {"produce", "dairy", "beverages"}
    assert set(manifest.categories) <= set(product_categories())


def test_grocery_manifest_records_how_it_was_trained(manifest: ModelManifest) -> None:
    training = json.loads((default_model_dir() / MANIFEST_FILE).read_text())["training"]
    assert training["seed"] == 0
    assert training["data"]["split_sizes"] == {"train": 2640, "val": 296}
    assert training["recipe"]["arch"] == "efficientnet-lite0"
    assert len(training["history"]) == training["recipe"]["epochs"]
    assert training["export_check"]["onnx_vs_torch_max_abs_diff"]["probabilities"] < 1e-3
    assert training["review"]["temperature"] > 0
    # Training fitted a product-level rule on FP32 outputs; the shipped review object
    # holds the kind-level rule `vitrine review-policy` fitted on the INT8 graph since.
    assert 0 < training["review"]["confidence_threshold"] < 1
    assert manifest.confidence_threshold is None
    assert manifest.kind_threshold is not None
    assert 0 < manifest.kind_threshold < 1


def test_shipped_imagenet_manifest_matches_the_committed_model(
    imagenet_manifest: ModelManifest,
) -> None:
    manifest = imagenet_manifest
    assert manifest.name == "efficientnet-lite0"
    assert manifest.path == default_model_dir(IMAGENET_MODEL) / "model.onnx"
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
    assert manifest.ood_output is None
    assert (manifest.confidence_threshold, manifest.ood_threshold) == (None, None)


def test_shipped_imagenet_manifest_agrees_with_the_data_files(
    imagenet_manifest: ModelManifest,
) -> None:
    """Editing data/imagenet_categories.tsv needs a re-run of the export.

    (``python -m inference.training.export --manifest-only``)
    """
    rebuilt = build_manifest(default_model_dir(IMAGENET_MODEL))
    assert rebuilt.labels == imagenet_manifest.labels
    assert rebuilt.categories == imagenet_manifest.categories
    assert rebuilt.sha256 == imagenet_manifest.sha256


def test_every_imagenet_class_maps_to_a_known_category() -> None:
    classes = imagenet_classes()
    known = product_categories()
    assert len(classes) == 1000
    assert [c.index for c in classes] == list(range(1000))
    assert len({c.wnid for c in classes}) == 1000
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert len({c.label for c in classes}) == 1000, "display labels must be unique"
    assert all(c.category in known for c in classes)
    assert 10 <= len(known) <= 24
    # Every category is reachable from some class of a shipped model (else it is
    # dead taxonomy): ImageNet has no dairy class, the Grocery Store model does.
    assert {c.category for c in classes} | set(_grocery_rows().values()) == set(known)


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
    shutil.copytree(default_model_dir(IMAGENET_MODEL), target)
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


def test_round_trip(model_copy: Path, imagenet_manifest: ModelManifest) -> None:
    loaded = ModelManifest.load(model_copy)
    again = ModelManifest.from_dict(json.loads(json.dumps(loaded.to_dict())), model_dir=model_copy)
    assert again == loaded
    assert loaded.replace(path=imagenet_manifest.path) == imagenet_manifest


def test_round_trip_keeps_the_ood_output_and_review_thresholds(
    tmp_path: Path, manifest: ModelManifest
) -> None:
    target = tmp_path / "grocery"
    shutil.copytree(default_model_dir(), target)
    loaded = ModelManifest.load(target)
    raw = json.loads(json.dumps(loaded.to_dict()))
    assert raw["outputs"]["ood_score"] == "ood_score"
    assert raw["review"] == {
        "confidence_threshold": manifest.confidence_threshold,
        "ood_threshold": manifest.ood_threshold,
        "kind_threshold": manifest.kind_threshold,
        "product_threshold": manifest.product_threshold,
    }
    assert raw["coarse"] == list(manifest.coarse)
    assert ModelManifest.from_dict(raw, model_dir=target) == loaded
    assert raw["search"]["projection_file"] == "embedding_projection.npz"
    same_paths = loaded.replace(
        path=manifest.path, projection_path=manifest.projection_path, int8=manifest.int8
    )
    assert same_paths == manifest


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


# ------------------------------------------------------------------ review thresholds, kinds


def test_the_default_model_knows_the_kind_of_each_label(manifest: ModelManifest) -> None:
    assert len(manifest.coarse) == manifest.num_classes
    assert len(set(manifest.coarse)) == 43
    assert manifest.coarse[manifest.labels.index("Granny-Smith")] == "Apple"


def test_a_manifest_from_before_kinds_loads_as_it_did(tmp_path: Path) -> None:
    target = tmp_path / "old"
    shutil.copytree(default_model_dir(), target)
    raw = json.loads((target / MANIFEST_FILE).read_text())
    del raw["coarse"]
    raw["review"] = {"confidence_threshold": 0.9, "ood_threshold": 0.5}
    old = ModelManifest.from_dict(raw, model_dir=target)
    assert (old.confidence_threshold, old.ood_threshold) == (0.9, 0.5)
    assert (old.kind_threshold, old.product_threshold, old.coarse) == (None, None, ())
    written = old.to_dict()
    assert written["review"] == {"confidence_threshold": 0.9, "ood_threshold": 0.5}
    assert "coarse" not in written


def test_a_coarse_list_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "bad"
    shutil.copytree(default_model_dir(), target)
    raw = json.loads((target / MANIFEST_FILE).read_text())
    raw["coarse"] = raw["coarse"][:-1]
    with pytest.raises(ModelError, match="81 labels but 80 coarse kinds"):
        ModelManifest.from_dict(raw, model_dir=target)


def test_a_kind_threshold_must_be_a_number(tmp_path: Path) -> None:
    target = tmp_path / "bad"
    shutil.copytree(default_model_dir(), target)
    raw = json.loads((target / MANIFEST_FILE).read_text())
    raw["review"]["kind_threshold"] = "high"
    with pytest.raises(ModelError, match="kind_threshold"):
        ModelManifest.from_dict(raw, model_dir=target)
