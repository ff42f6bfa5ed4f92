"""Loading class folders and Grocery Store list files; splits and data hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.training.dataset import data_hash, load_dataset, stratified_split
from inference.training.errors import DatasetError
from inference.training.features import hash_images

from .conftest import TINY_CLASSES


def test_folder_dataset_classes_samples_and_coarse(tiny_dataset: Path) -> None:
    ds = load_dataset(tiny_dataset)
    assert ds.classes == TINY_CLASSES
    assert len(ds) == 24
    assert ds.counts().tolist() == [6, 6, 6, 6]
    # classes.csv beside the class folders gives the coarse classes.
    assert ds.coarse == ("Banana", "Apple", "Oat-Milk", "Apple")
    assert all(s.path.parent.name == ds.classes[s.label] for s in ds.samples)


def _write_list(tmp_path: Path, tiny: Path) -> Path:
    (tmp_path / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int)\n"
        "Granny-Smith,1,Apple,0\nPink-Lady,2,Apple,0\nBanana,6,Banana,2\n",
        encoding="utf-8",
    )
    train = tmp_path / "train"
    lines = []
    for cls, fine in (("Granny-Smith", 1), ("Pink-Lady", 2), ("Banana", 6)):
        (train / cls).mkdir(parents=True)
        for image in sorted((tiny / cls).glob("*.jpg"))[:3]:
            shutil.copy(image, train / cls / image.name)
            lines.append(f"train/{cls}/{image.name}, {fine}, 0")
    list_file = tmp_path / "train.txt"
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_file


def test_list_file_in_grocery_store_format(tmp_path: Path, tiny_dataset: Path) -> None:
    ds = load_dataset(_write_list(tmp_path, tiny_dataset))
    # Class ids 1, 2, 6 become positions 0, 1, 2 in id order.
    assert ds.classes == ("Granny-Smith", "Pink-Lady", "Banana")
    assert ds.coarse == ("Apple", "Apple", "Banana")
    assert ds.counts().tolist() == [3, 3, 3]
    assert ds.source == "list"


def test_list_file_with_a_missing_image_names_the_line(tmp_path: Path, tiny_dataset: Path) -> None:
    list_file = _write_list(tmp_path, tiny_dataset)
    with list_file.open("a", encoding="utf-8") as fh:
        fh.write("train/Banana/not-there.jpg, 6, 2\n")
    with pytest.raises(DatasetError, match=r"train\.txt:10: image train/Banana/not-there\.jpg"):
        load_dataset(list_file)


def test_one_class_is_not_enough(tmp_path: Path, tiny_dataset: Path) -> None:
    shutil.copytree(tiny_dataset / "Banana", tmp_path / "Banana")
    with pytest.raises(DatasetError, match="training needs two or more"):
        load_dataset(tmp_path)


def test_missing_data_set_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_stratified_split_holds_out_every_class() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, held = stratified_split(labels, 0.2, seed=1)
    assert sorted([*train, *held]) == list(range(16))
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # a lone image stays
    again = stratified_split(labels, 0.2, seed=1)
    assert again[1].tolist() == held.tolist()


def test_data_hash_depends_on_content_and_labels_not_paths(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    ds = load_dataset(tiny_dataset)
    hashes = hash_images(ds, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    moved = load_dataset(copy)
    assert data_hash(moved, hash_images(moved, progress=False)) == data_hash(ds, hashes)
    fewer = ds.subset(range(1, len(ds)))
    assert data_hash(fewer, hashes[1:]) != data_hash(ds, hashes)
