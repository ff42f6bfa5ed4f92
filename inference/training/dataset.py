"""Labelled image data sets: a class-per-folder tree or a Grocery Store style list file.

Two layouts are understood:

* a **folder** whose immediate sub-folders are the classes; every image below a
  class folder (recursively) belongs to it. An optional ``classes.csv`` beside
  the class folders, in the Grocery Store format, gives each class a coarse class;
* a **list file** (``train.txt``) with one ``path, fine_id, coarse_id`` line per
  image, paths relative to the list file's folder or to its parent, and the
  ``classes.csv`` that names the ids found next to it or one folder up.

Both give a :class:`Dataset`: class names in id order, the coarse class of each
class where the data has one, and the samples. :func:`data_hash` fingerprints
the data (file contents and labels) for the training metadata.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.training.errors import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "Sample",
    "data_hash",
    "load_dataset",
    "stratified_split",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class Sample:
    """One labelled image: its file and the index of its class in ``Dataset.classes``."""

    path: Path
    label: int


@dataclass(frozen=True)
class Dataset:
    """Samples with class names (index = label) and, where known, coarse classes."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    # Coarse class name of each class, in class order; empty when the data has none.
    coarse: tuple[str, ...] = ()
    source: str = "folder"

    def __post_init__(self) -> None:
        if self.coarse and len(self.coarse) != len(self.classes):
            raise DatasetError(
                "train.dataset_invalid",
                f"{len(self.coarse)} coarse names for {len(self.classes)} classes in {self.root}",
            )

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every sample, as an int64 array."""
        return np.fromiter((s.label for s in self.samples), dtype=np.int64, count=len(self))

    @property
    def coarse_classes(self) -> tuple[str, ...]:
        """Distinct coarse class names in first-seen order (empty without coarse data)."""
        return tuple(dict.fromkeys(self.coarse))

    def counts(self) -> np.ndarray:
        """Number of samples of each class."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def subset(self, indices: Iterable[int]) -> Dataset:
        """The same classes with only the samples at ``indices``."""
        picked = tuple(self.samples[i] for i in indices)
        return Dataset(self.root, self.classes, picked, self.coarse, self.source)

    def with_classes(self, classes: Sequence[str], coarse: Sequence[str] = ()) -> Dataset:
        """Re-index the labels onto another class list that holds all of this data's classes."""
        index = {name: i for i, name in enumerate(classes)}
        missing = sorted({self.classes[s.label] for s in self.samples} - index.keys())
        if missing:
            raise DatasetError(
                "train.dataset_invalid",
                f"{len(missing)} classes of {self.root} are not in the target class list: "
                + ", ".join(missing[:10]),
            )
        samples = tuple(Sample(s.path, index[self.classes[s.label]]) for s in self.samples)
        return Dataset(self.root, tuple(classes), samples, tuple(coarse), self.source)


def load_dataset(path: Path, *, min_images_per_class: int = 1) -> Dataset:
    """Load a class-per-folder tree or a ``path, fine_id, coarse_id`` list file.

    Raises :class:`DatasetError` naming the path when the layout is not understood,
    a listed image is missing, or the data has fewer than two classes.
    """
    path = Path(path)
    if path.is_dir():
        dataset = _load_folder(path)
    elif path.is_file():
        dataset = _load_list(path)
    else:
        raise DatasetError("train.dataset_invalid", f"data set {path} does not exist")
    if len(dataset) == 0:
        raise DatasetError(
            "train.dataset_invalid",
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}",
        )
    present = int((dataset.counts() >= min_images_per_class).sum())
    if present < 2:
        raise DatasetError(
            "train.dataset_invalid",
            f"data set {path} has {present} class(es) with at least "
            f"{min_images_per_class} image(s); training needs two or more",
        )
    logger.info(
        "loaded %d images in %d classes from %s (%s)",
        len(dataset),
        len(dataset.classes),
        path,
        dataset.source,
    )
    return dataset


def _load_folder(root: Path) -> Dataset:
    class_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not class_dirs:
        raise DatasetError(
            "train.dataset_invalid",
            f"{root} has no class sub-folders (expected {root}/<class>/<image>)",
        )
    classes = tuple(p.name for p in class_dirs)
    samples: list[Sample] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        samples.extend(Sample(p, label) for p in files)
    coarse: tuple[str, ...] = ()
    classes_csv = root / "classes.csv"
    if classes_csv.is_file():
        names = _read_classes_csv(classes_csv)
        by_name = dict(names.values())
        if all(c in by_name for c in classes):
            coarse = tuple(by_name[c] for c in classes)
        else:
            logger.warning("ignoring %s: it does not name every class folder", classes_csv)
    return Dataset(root, classes, tuple(samples), coarse, "folder")


def _read_classes_csv(path: Path) -> dict[int, tuple[str, str]]:
    """Map class id -> (class name, coarse class name) from a Grocery Store ``classes.csv``."""
    out: dict[int, tuple[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or len(header) < 4:
            raise DatasetError(
                "train.dataset_invalid",
                f"{path}: expected a header 'Class Name, Class ID, Coarse Class Name, "
                "Coarse Class ID, ...'",
            )
        for lineno, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                out[int(row[1])] = (row[0].strip(), row[2].strip())
            except (IndexError, ValueError) as exc:
                raise DatasetError(
                    "train.dataset_invalid", f"{path}:{lineno}: cannot read class row {row!r}"
                ) from exc
    if not out:
        raise DatasetError("train.dataset_invalid", f"{path} names no classes")
    return out


def _load_list(list_file: Path) -> Dataset:
    folder = list_file.parent
    classes_csv = next(
        (p for p in (folder / "classes.csv", folder.parent / "classes.csv") if p.is_file()), None
    )
    if classes_csv is None:
        raise DatasetError(
            "train.dataset_invalid",
            f"{list_file}: no classes.csv beside it or one folder up; a list file needs one",
        )
    names = _read_classes_csv(classes_csv)
    ids = sorted(names)  # classes in id order; a sample's label is its id's position
    position = {class_id: i for i, class_id in enumerate(ids)}
    classes = tuple(names[i][0] for i in ids)
    coarse = tuple(names[i][1] for i in ids)
    samples: list[Sample] = []
    with list_file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            try:
                rel, fine = parts[0], int(parts[1])
            except (IndexError, ValueError) as exc:
                raise DatasetError(
                    "train.dataset_invalid",
                    f"{list_file}:{lineno}: expected 'path, fine_id, coarse_id', "
                    f"got {line.strip()!r}",
                ) from exc
            if fine not in names:
                raise DatasetError(
                    "train.dataset_invalid",
                    f"{list_file}:{lineno}: class id {fine} not in {classes_csv}",
                )
            image = next(
                (p for p in (folder / rel, folder.parent / rel) if p.is_file()), folder / rel
            )
            if not image.is_file():
                raise DatasetError(
                    "train.dataset_invalid",
                    f"{list_file}:{lineno}: image {rel} not found under {folder}",
                )
            samples.append(Sample(image, position[fine]))
    return Dataset(folder, classes, tuple(samples), coarse, "list")


def data_hash(dataset: Dataset, image_hashes: Sequence[str]) -> str:
    """Fingerprint of the data: class names and each image's content hash and label.

    File paths are left out, so the same photos with the same labels in another
    folder give the same hash.
    """
    if len(image_hashes) != len(dataset):
        raise ValueError(f"{len(image_hashes)} hashes for {len(dataset)} samples")
    digest = hashlib.sha256()
    digest.update("\n".join(dataset.classes).encode())
    digest.update("\n".join(dataset.coarse).encode())
    for h, s in sorted(zip(image_hashes, dataset.samples, strict=True), key=lambda t: t[0]):
        digest.update(f"{h}:{dataset.classes[s.label]}\n".encode())
    return digest.hexdigest()


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train, held-out), ``fraction`` of each class held out.

    A class with one image stays in train; otherwise at least one image of each
    class is held out, so validation sees every class it can.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    held_idx: list[int] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_held = 0 if len(idx) < 2 else max(1, round(len(idx) * fraction))
        held_idx.extend(idx[:n_held].tolist())
        train_idx.extend(idx[n_held:].tolist())
    return np.array(sorted(train_idx), dtype=np.int64), np.array(sorted(held_idx), dtype=np.int64)
