"""Backbone feature extraction with an on-disk cache.

Every image gives view 0, the serving view (short side resized, centre crop:
what the engine feeds the model), and for training views 1..K, random augmented
crops (:mod:`inference.training.augment`). Features are cached per image under

    <cache_dir>/<model key>/<output>/<sha[:2]>/<sha>.<view key>.npy

keyed by the image's content hash; the model key hashes the ONNX file and its
input; the view key is the serving resize for view 0, and the augmentation
parameters and seed for the others. A second run, or a run asking for more
views, only computes what is missing.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inference.serving.manifest import sha256_file
from inference.training.augment import AugmentConfig, augment, view_rng
from inference.training.backbone import Backbone
from inference.training.dataset import Dataset

__all__ = ["EMBEDDING", "FeatureCache", "FeatureSet", "extract_features", "hash_images"]

logger = logging.getLogger(__name__)

#: Key of the pooled features in :attr:`FeatureSet.features` and in the cache.
EMBEDDING = "embedding"


@dataclass(frozen=True)
class FeatureSet:
    """Backbone outputs for a data set's views, one row per (sample, view)."""

    features: dict[str, np.ndarray]  # output name -> (rows, ...) float32
    sample: np.ndarray  # (rows,) index into the data set
    view: np.ndarray  # (rows,) 0 = serving view, >= 1 augmented
    labels: np.ndarray  # (rows,) class index

    @property
    def embedding(self) -> np.ndarray:
        """The pooled penultimate features, (rows, D)."""
        return self.features[EMBEDDING]


class FeatureCache:
    """One ``.npy`` file per (image, output, view group); writes are atomic."""

    def __init__(self, root: Path, backbone: Backbone) -> None:
        self.root = Path(root) / backbone.model_key

    def path(self, output: str, image_sha: str, view_key: str) -> Path:
        """Where the views of one image for one output live."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", output)[:80]
        return self.root / safe / image_sha[:2] / f"{image_sha}.{view_key}.npy"

    def load(self, output: str, image_sha: str, view_key: str) -> np.ndarray | None:
        """Cached views, (n_views, ...), or None."""
        path = self.path(output, image_sha, view_key)
        try:
            return np.load(path)  # type: ignore[no-any-return]
        except (FileNotFoundError, ValueError, OSError):
            return None

    def save(self, output: str, image_sha: str, view_key: str, array: np.ndarray) -> None:
        """Store views atomically (a killed run never leaves a torn file)."""
        path = self.path(output, image_sha, view_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def hash_images(dataset: Dataset, *, progress: bool = True) -> list[str]:
    """SHA-256 of every sample's file, in sample order."""
    return [
        sha256_file(s.path)
        for s in tqdm(dataset.samples, desc="hashing images", unit="img", disable=not progress)
    ]


def _load_cached(
    cache: FeatureCache | None,
    image_hashes: Sequence[str],
    outputs: tuple[str, ...],
    center_key: str,
    aug_key: str,
    n_augmented: int,
) -> tuple[list[dict[str, list[np.ndarray | None]]], list[tuple[int, int]]]:
    """Each image's cached views per output (None where missing), and the views to compute."""
    per_image: list[dict[str, list[np.ndarray | None]]] = []
    todo: list[tuple[int, int]] = []  # (sample index, view)
    for i, sha in enumerate(image_hashes):
        slots: dict[str, list[np.ndarray | None]] = {}
        have_center = True
        have_aug = 0
        for out in outputs:
            center = cache.load(out, sha, center_key) if cache else None
            aug = cache.load(out, sha, aug_key) if cache and n_augmented else None
            have_center &= center is not None
            n_aug = 0 if aug is None else min(len(aug), n_augmented)
            have_aug = n_aug if out == outputs[0] else min(have_aug, n_aug)
            slots[out] = [None if center is None else center[0]]
            slots[out] += [
                aug[v] if aug is not None and v < len(aug) else None for v in range(n_augmented)
            ]
        per_image.append(slots)
        if not have_center:
            todo.append((i, 0))
        todo.extend((i, v) for v in range(1 + have_aug, 1 + n_augmented))
    return per_image, todo


def _stack_rows(
    per_image: list[dict[str, list[np.ndarray | None]]], outputs: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """One array per output with every view's row, sample by sample, in the output's dtype."""
    features: dict[str, np.ndarray] = {}
    for out in outputs:
        rows = [v for slots in per_image for v in slots[out] if v is not None]
        array = np.empty((len(rows), *rows[0].shape), _dtype(out)) if rows else np.zeros((0,))
        for r, value in enumerate(rows):
            array[r] = value
        features[out] = array
    return features


def extract_features(
    dataset: Dataset,
    backbone: Backbone,
    *,
    image_hashes: Sequence[str],
    n_augmented: int = 0,
    augment_cfg: AugmentConfig | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    outputs: Sequence[str] = (EMBEDDING,),
    batch_size: int = 32,
    intra_op_threads: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> FeatureSet:
    """Run the backbone over view 0 and ``n_augmented`` augmented views of every sample.

    Rows come out sample by sample, view 0 first. Outputs other than
    ``embedding`` are inner tensors of the graph (for fine-tuning), stored as
    float16 in the cache.
    """
    cfg = augment_cfg or AugmentConfig()
    aug_key = f"{cfg.key()}-s{seed}"
    center_key = backbone.serving_view_key
    cache = FeatureCache(cache_dir, backbone) if cache_dir is not None else None
    outputs = tuple(outputs)

    # Load what the cache has; note what must be computed.
    per_image, todo = _load_cached(cache, image_hashes, outputs, center_key, aug_key, n_augmented)

    if todo:
        logger.info(
            "%s: computing %d views (%d images, cache %s)",
            desc,
            len(todo),
            len({i for i, _ in todo}),
            cache.root if cache else "off",
        )

        def save(i: int) -> None:
            # Called as soon as an image's views are all computed, so an
            # interrupted run keeps what it has done.
            if cache is None:
                return
            for out in outputs:
                views = [v for v in per_image[i][out] if v is not None]
                cache.save(out, image_hashes[i], center_key, np.stack(views[:1]))
                if n_augmented:
                    cache.save(out, image_hashes[i], aug_key, np.stack(views[1:]))

        _compute(
            dataset,
            backbone,
            image_hashes,
            todo,
            per_image,
            outputs,
            cfg,
            seed,
            batch_size,
            intra_op_threads,
            progress,
            desc,
            save,
        )
    else:
        logger.info("%s: all %d images' features from the cache", desc, len(dataset))

    n_views = 1 + n_augmented
    features = _stack_rows(per_image, outputs)
    labels = dataset.labels
    return FeatureSet(
        features,
        np.repeat(np.arange(len(dataset)), n_views),
        np.tile(np.arange(n_views), len(dataset)),
        np.repeat(labels, n_views),
    )


def _dtype(output: str) -> type[np.floating[Any]]:
    """Embeddings are kept in float32; inner feature maps in float16 (half the memory)."""
    return np.float32 if output == EMBEDDING else np.float16


def _compute(
    dataset: Dataset,
    backbone: Backbone,
    image_hashes: Sequence[str],
    todo: list[tuple[int, int]],
    per_image: list[dict[str, list[np.ndarray | None]]],
    outputs: tuple[str, ...],
    cfg: AugmentConfig,
    seed: int,
    batch_size: int,
    intra_op_threads: int,
    progress: bool,
    desc: str,
    on_image_done: Callable[[int], None],
) -> None:
    extra = [o for o in outputs if o != EMBEDDING]
    remaining = Counter(i for i, _ in todo)
    session = backbone.session(extra_outputs=extra, intra_op_threads=intra_op_threads)
    names = [backbone.embedding_output if o == EMBEDDING else o for o in outputs]
    size = backbone.input_size
    batch = np.empty((batch_size, size, size, 3), np.uint8)
    owners: list[tuple[int, int]] = []
    decoded: tuple[int, np.ndarray] | None = None

    def flush() -> None:
        n = len(owners)
        result = session.run(names, {backbone.manifest.input_name: backbone.to_input(batch[:n])})
        for k, out in enumerate(outputs):
            values = np.asarray(result[k])
            for row, (i, v) in enumerate(owners):
                per_image[i][out][v] = values[row].astype(_dtype(out))
        for i, _ in owners:
            remaining[i] -= 1
            if remaining[i] == 0:
                on_image_done(i)
        owners.clear()

    bar = tqdm(total=len(todo), desc=desc, unit="view", disable=not progress)
    for i, v in todo:
        if decoded is None or decoded[0] != i:
            path = dataset.samples[i].path
            decoded = (i, backbone.decode(path.read_bytes(), path))
        image = decoded[1]
        if v == 0:
            crop = backbone.center_crop(image)
        else:
            crop = augment(image, size, cfg, view_rng(seed, image_hashes[i], v))
        batch[len(owners)] = crop
        owners.append((i, v))
        if len(owners) == batch_size:
            flush()
            bar.update(batch_size)
    if owners:
        bar.update(len(owners))
        flush()
    bar.close()
