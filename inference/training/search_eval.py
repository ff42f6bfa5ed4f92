"""Fit the visual-search projection and measure search quality on the data set's splits.

``vitrine fit-search`` embeds the train split with the model (each photo and its
mirror image, a free augmentation), fits :class:`EmbeddingProjection` (PCA to
``dims`` components, optional partial whitening) and writes it next to the
model, recording its file and sha256 in the manifest.

``vitrine evaluate-search`` indexes the train split and queries it with every
val photo: precision@1 is the share of queries whose nearest train photo is of
the same fine class, recall@10 the share with one of the same class among the
ten nearest. It does so for the raw 1,280-d embedding (exact search), the
compact descriptor (exact search) and the compact descriptor in the HNSW index
the worker serves. Tune on val only; the test split is never read.

Embeddings of a split are cached under ``cache_dir`` by model version, precision and the
list file's contents, so a second run (or ``vitrine bench search``) does not
infer again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from inference.serving.decode import LOCAL_FILE_LIMITS, decode_image
from inference.serving.engine import Engine
from inference.serving.manifest import MANIFEST_FILE, ModelManifest
from inference.serving.search import (
    PROJECTION_FILE,
    EmbeddingProjection,
    VectorIndex,
    exact_search,
    l2_normalise,
)
from inference.training.dataset import Dataset, load_dataset

__all__ = [
    "SearchScore",
    "SplitEmbeddings",
    "embed_dataset",
    "evaluate_search",
    "fit_search_projection",
    "format_scores",
    "score_search",
    "split_embeddings",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitEmbeddings:
    """The model's embeddings of a split's photos (and of their mirror images)."""

    embeddings: FloatArray
    mirrored: FloatArray
    labels: IntArray


def embed_dataset(engine: Engine, dataset: Dataset, *, progress: bool = True) -> SplitEmbeddings:
    """Embed every photo of ``dataset`` and its mirror image (photos that fail are skipped)."""
    if engine.manifest.embedding_output is None:
        raise ValueError(f"model {engine.model_name} has no embedding output")
    rows: list[FloatArray] = []
    mirrored: list[FloatArray] = []
    labels: list[int] = []
    pre = engine.preprocessor
    size = engine.max_batch_size
    samples = dataset.samples
    bar = tqdm(total=len(samples), desc="embedding", unit="img", disable=not progress)
    for start in range(0, len(samples), size):
        pixels = []
        for sample in samples[start : start + size]:
            try:
                data = sample.path.read_bytes()
                image = decode_image(
                    data, LOCAL_FILE_LIMITS, min_side=engine.manifest.resize_short_side
                )
            except (OSError, ValueError) as exc:
                logger.warning("skipping %s: %s", sample.path, exc)
                continue
            pixels.append(image.pixels)
            labels.append(sample.label)
        if pixels:
            crops = pre.crops(pixels)
            for batch, out in ((crops, rows), (np.ascontiguousarray(crops[:, :, ::-1]), mirrored)):
                emb = engine.infer_outputs(pre.to_model_input(batch), with_embedding=True).embedding
                assert emb is not None
                out.append(emb)
        bar.update(min(size, len(samples) - start))
    bar.close()
    return SplitEmbeddings(
        np.concatenate(rows), np.concatenate(mirrored), np.asarray(labels, dtype=np.int64)
    )


def split_embeddings(
    engine: Engine, list_file: Path, cache_dir: Path | None, *, progress: bool = True
) -> SplitEmbeddings:
    """:func:`embed_dataset` of a list file or folder, cached by model, precision and contents."""
    key = _data_key(list_file)
    path = None
    if cache_dir is not None:
        model = f"{engine.model_name}-{engine.model_version}-{engine.precision}"
        path = cache_dir / f"{model}-{list_file.stem}-{key}.npz"
        if path.is_file():
            with np.load(path) as npz:
                return SplitEmbeddings(npz["embeddings"], npz["mirrored"], npz["labels"])
    split = embed_dataset(engine, load_dataset(list_file), progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **asdict(split))
    return split


def _data_key(data: Path) -> str:
    """A list file's contents, or a folder's file names and sizes, hashed."""
    digest = hashlib.sha256()
    if data.is_dir():
        for path in sorted(p for p in data.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(data)}\0{path.stat().st_size}\n".encode())
    else:
        digest.update(data.read_bytes())
    return digest.hexdigest()[:12]


def fit_search_projection(
    engine: Engine,
    train_list: Path,
    *,
    dims: int = 128,
    whiten: float = 0.0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> ModelManifest:
    """Fit the projection on the train split, write it beside the model, update the manifest."""
    split = split_embeddings(engine, train_list, cache_dir, progress=progress)
    projection = EmbeddingProjection.fit(
        np.concatenate([split.embeddings, split.mirrored]), dims, whiten=whiten
    )
    manifest = engine.manifest
    path = manifest.model_dir / PROJECTION_FILE
    sha = projection.save(path)
    _record_projection(manifest.model_dir / MANIFEST_FILE, path.name, sha)
    updated = manifest.replace(projection_path=path, projection_sha256=sha)
    logger.info("wrote %s (%d -> %d dims, sha256 %s)", path, projection.input_dims, dims, sha)
    return updated


def _record_projection(manifest_path: Path, file_name: str, sha256: str) -> None:
    """Set the manifest's ``search`` section, keeping every other key as it is.

    (``ModelManifest.write`` would drop what it does not model, such as ``training``.)
    """
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    section = {"projection_file": file_name, "projection_sha256": sha256}
    if "search" not in raw:  # place it after "review", where ModelManifest writes it
        keys = list(raw)
        at = keys.index("review") + 1 if "review" in keys else len(keys)
        raw = {**dict(list(raw.items())[:at]), "search": section, **dict(list(raw.items())[at:])}
    raw["search"] = section
    text = json.dumps(raw, indent=2, ensure_ascii=False)
    manifest_path.write_text(text + "\n", encoding="utf-8")


@dataclass(frozen=True)
class SearchScore:
    """Search quality of one descriptor and index."""

    descriptor: str
    index: str
    dims: int
    bytes_per_vector: int
    precision_at_1: float
    recall_at_10: float


def score_search(
    base_labels: IntArray, query_labels: IntArray, neighbours: npt.NDArray[np.int64]
) -> tuple[float, float]:
    """(precision@1, recall@10) from the (queries, >=10) indices of base rows, nearest first."""
    same = base_labels[neighbours[:, :10]] == query_labels[:, None]
    return float(same[:, 0].mean()), float(same.any(axis=1).mean())


def _hnsw_neighbours(base: FloatArray, queries: FloatArray) -> npt.NDArray[np.int64]:
    index = VectorIndex(base.shape[1])
    index.add([str(i) for i in range(len(base))], base)
    return np.asarray([[int(h.id) for h in index.search(q, 10)] for q in queries], dtype=np.int64)


def evaluate_search(
    engine: Engine,
    train_data: Path,
    val_data: Path,
    *,
    cache_dir: Path | None = None,
    mirror: bool = False,
    progress: bool = True,
) -> list[SearchScore]:
    """``val_data`` photos as queries against ``train_data``: raw, compact exact, compact in HNSW.

    ``mirror``: every photo's embedding is averaged with its mirror image's (twice
    the inference; the worker does not do it).
    """
    projection = EmbeddingProjection.for_model(engine.manifest)
    train = split_embeddings(engine, train_data, cache_dir, progress=progress)
    val = split_embeddings(engine, val_data, cache_dir, progress=progress)

    def view(split: SplitEmbeddings) -> FloatArray:
        if mirror:
            return ((split.embeddings + split.mirrored) / 2).astype(np.float32)
        return split.embeddings

    base, queries = view(train), view(val)
    raw_b, raw_q = l2_normalise(base), l2_normalise(queries)
    scores = [
        SearchScore(
            "raw", "exact", raw_b.shape[1], 4 * raw_b.shape[1],
            *score_search(train.labels, val.labels, exact_search(raw_b, raw_q, 10)[0]),
        )
    ]  # fmt: skip
    if projection is None:
        logger.warning("model %s has no search projection (vitrine fit-search)", engine.model_name)
        return scores
    comp_b, comp_q = projection.project(base), projection.project(queries)
    d = projection.dims
    exact = exact_search(comp_b, comp_q, 10)[0]
    scores.append(
        SearchScore("compact", "exact", d, 4 * d, *score_search(train.labels, val.labels, exact))
    )
    hnsw = _hnsw_neighbours(comp_b, comp_q)
    scores.append(
        SearchScore("compact", "hnsw-f16", d, 2 * d, *score_search(train.labels, val.labels, hnsw))
    )
    return scores


def format_scores(scores: Sequence[SearchScore], *, queries: str = "val") -> str:
    """A plain-text table of :func:`evaluate_search`'s rows."""
    lines = [
        f"{'descriptor':<11}{'index':<10}{'dims':>6}{'bytes/vec':>11}{'P@1':>9}{'R@10':>9}",
    ]
    for s in scores:
        lines.append(
            f"{s.descriptor:<11}{s.index:<10}{s.dims:>6}{s.bytes_per_vector:>11}"
            f"{100 * s.precision_at_1:>8.1f}%{100 * s.recall_at_10:>8.1f}%"
        )
    lines.append(f"(queries: the {queries} split; base: the train split)")
    return "\n".join(lines)


def scores_json(scores: Sequence[SearchScore]) -> list[dict[str, Any]]:
    """The rows as JSON-able dicts."""
    return [asdict(s) for s in scores]
