"""Visual search: compact image embeddings and an approximate nearest-neighbour index.

The model's pooled embedding has 1,280 float32 dimensions (5 KiB a product).
:class:`EmbeddingProjection` maps it to a compact descriptor: centred on the
training mean, projected on the leading principal components of the training
split, whitened (each component divided by its standard deviation, plus a
small constant so that noise directions are not blown up), and L2-normalised,
so that cosine similarity is a dot product. It is fitted offline
(``vitrine fit-search``, :mod:`inference.training.search_eval`) and ships next
to the model as ``embedding_projection.npz``, its sha256 in the manifest.

:class:`VectorIndex` is a usearch HNSW graph over those descriptors (cosine
metric, float16 scalars by default: 2 bytes a dimension; measured with ``vitrine
bench search``), with string ids (product ids) mapped to the integer keys
usearch stores, and save/load. :func:`exact_search` is the brute-force
baseline the benchmark and the evaluation compare it with.

Numpy and usearch only: no Kafka, Redis or Faust (the worker materialises the
index from a topic; this module only holds it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.serving.manifest import ModelManifest

__all__ = [
    "PROJECTION_FILE",
    "EmbeddingProjection",
    "Hit",
    "VectorIndex",
    "decode_vector",
    "encode_vector",
    "exact_search",
    "l2_normalise",
]

logger = logging.getLogger(__name__)

PROJECTION_FILE = "embedding_projection.npz"

Scalar = Literal["f32", "f16", "i8"]
FloatArray = npt.NDArray[np.float32]


def l2_normalise(x: npt.ArrayLike) -> FloatArray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    out: FloatArray = arr / np.maximum(norms, 1e-12)
    return out


@dataclass(frozen=True)
class EmbeddingProjection:
    """Centre, project, whiten and L2-normalise embeddings (fitted on the train split).

    ``mean``: (D,); ``components``: (D, d), columns the principal axes;
    ``scale``: (d,), what each projected coordinate is divided by.
    """

    mean: FloatArray
    components: FloatArray
    scale: FloatArray

    @property
    def input_dims(self) -> int:
        """Dimensions of the model's embedding."""
        return int(self.components.shape[0])

    @property
    def dims(self) -> int:
        """Dimensions of the compact descriptor."""
        return int(self.components.shape[1])

    def project(self, embeddings: npt.ArrayLike) -> FloatArray:
        """Compact, unit-length descriptors of ``embeddings`` (N, D) -> (N, d)."""
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != self.input_dims:
            raise ValueError(
                f"embeddings have {x.shape[1]} dimensions; the projection takes {self.input_dims}"
            )
        return l2_normalise(((x - self.mean) @ self.components) / self.scale)

    @classmethod
    def fit(
        cls, embeddings: npt.ArrayLike, dims: int = 128, *, whiten: float = 0.5
    ) -> EmbeddingProjection:
        """PCA of ``embeddings`` (the train split's), keeping ``dims`` components.

        ``whiten`` in [0, 1]: each component is divided by its standard
        deviation to that power (0: plain PCA, 1: full whitening, which
        over-weights the weakest components).
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if not 1 <= dims <= min(x.shape):
            raise ValueError(f"dims={dims} must be 1..{min(x.shape)} for {x.shape} embeddings")
        mean = x.mean(axis=0)
        _, sing, vt = np.linalg.svd(x - mean, full_matrices=False)
        std = sing[:dims] / np.sqrt(max(len(x) - 1, 1))
        return cls(
            mean=mean.astype(np.float32),
            components=vt[:dims].T.astype(np.float32),
            scale=np.power(np.maximum(std, 1e-6), whiten).astype(np.float32),
        )

    def save(self, path: Path) -> str:
        """Write the projection as ``.npz``; return the file's sha256."""
        with path.open("wb") as f:
            np.savez(f, mean=self.mean, components=self.components, scale=self.scale)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def for_model(cls, manifest: ModelManifest) -> EmbeddingProjection | None:
        """The projection a model's manifest names (checksum verified), or None."""
        if manifest.projection_path is None:
            return None
        return cls.load(manifest.projection_path, sha256=manifest.projection_sha256)

    @classmethod
    def load(cls, path: Path, *, sha256: str | None = None) -> EmbeddingProjection:
        """Read a projection; with ``sha256``, refuse a file with another checksum."""
        data = path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{path} does not have the sha256 {sha256} its manifest declares")
        with np.load(path) as npz:
            return cls(
                mean=npz["mean"].astype(np.float32),
                components=npz["components"].astype(np.float32),
                scale=npz["scale"].astype(np.float32),
            )


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """A descriptor's wire form: little-endian float16 (2 bytes a dimension)."""
    return np.asarray(vector, dtype="<f2").tobytes()


def decode_vector(data: bytes) -> FloatArray:
    """Inverse of :func:`encode_vector` (float32, re-normalised)."""
    if len(data) % 2:
        raise ValueError(f"a float16 vector has an even number of bytes, not {len(data)}")
    return l2_normalise(np.frombuffer(data, dtype="<f2").astype(np.float32))


@dataclass(frozen=True)
class Hit:
    """One search result: the id and its cosine similarity to the query."""

    id: str
    score: float


def exact_search(
    base: FloatArray, queries: FloatArray, k: int
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Brute-force top-``k`` by dot product (unit vectors: cosine); (indices, scores)."""
    sims = queries @ base.T
    k = min(k, base.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    idx = np.take_along_axis(top, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(sims, idx, axis=1)


class VectorIndex:
    """An HNSW index (usearch) of unit vectors keyed by string ids; an id added again replaces.

    Not thread-safe for writes: the worker adds and searches on its event loop
    (a search of 100,000 vectors takes well under a millisecond).
    """

    def __init__(
        self,
        dims: int,
        *,
        scalar: Scalar = "f16",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
    ) -> None:
        from usearch.index import Index  # noqa: PLC0415

        self.dims = dims
        self.scalar: Scalar = scalar
        self.params = {
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
        }
        self._index = Index(
            ndim=dims,
            metric="cos",
            dtype=scalar,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        self._key_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._next_key = 0

    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, item: object) -> bool:
        return item in self._key_of

    @property
    def expansion_search(self) -> int:
        """HNSW query breadth (``ef``): higher finds more true neighbours, slower."""
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._index.expansion_search = value  # type: ignore[misc]
        self.params["expansion_search"] = value

    @property
    def memory_bytes(self) -> int:
        """What usearch has allocated for the graph and the vectors (the id maps not counted)."""
        return int(self._index.memory_usage)

    @property
    def serialized_bytes(self) -> int:
        """The graph and the vectors as saved: what they need, without allocation slack."""
        return int(self._index.serialized_length)

    def add(self, ids: Sequence[str], vectors: npt.ArrayLike, *, threads: int = 1) -> None:
        """Add (or replace) ``vectors`` (N, dims) under ``ids``."""
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dims)
        if len(ids) != len(vecs):
            raise ValueError(f"{len(ids)} ids but {len(vecs)} vectors")
        latest = dict(zip(ids, range(len(ids)), strict=True))  # the last of repeated ids wins
        if len(latest) != len(ids):
            ids = list(latest)
            vecs = vecs[list(latest.values())]
        self.remove([i for i in ids if i in self._key_of])
        keys = np.arange(self._next_key, self._next_key + len(ids), dtype=np.uint64)
        self._next_key += len(ids)
        for key, id_ in zip(keys.tolist(), ids, strict=True):
            self._key_of[id_] = key
            self._id_of[key] = id_
        if len(keys):
            self._index.add(keys, vecs, threads=threads)

    def remove(self, ids: Sequence[str]) -> None:
        """Forget ``ids`` (unknown ids are ignored)."""
        keys = [self._key_of.pop(i) for i in ids if i in self._key_of]
        for key in keys:
            del self._id_of[key]
        if keys:
            self._index.remove(np.asarray(keys, dtype=np.uint64))

    def ids(self) -> list[str]:
        """Every id in the index."""
        return list(self._key_of)

    def vector(self, id_: str) -> FloatArray | None:
        """The stored vector of ``id_`` (as the index's scalars hold it), or None."""
        key = self._key_of.get(id_)
        if key is None:
            return None
        got = self._index.get(key)
        return None if got is None else l2_normalise(np.asarray(got, dtype=np.float32))

    def search(self, query: npt.ArrayLike, k: int = 10, *, exclude: str | None = None) -> list[Hit]:
        """The ``k`` nearest ids to one query vector, most similar first."""
        if not self._key_of:
            return []
        want = min(k + (1 if exclude is not None else 0), len(self._key_of))
        q = np.asarray(query, dtype=np.float32).reshape(self.dims)
        found = self._index.search(q, want)
        hits = [
            Hit(self._id_of[int(key)], round(1.0 - float(dist), 6))
            for key, dist in zip(found.keys, found.distances, strict=True)
            if int(key) in self._id_of and self._id_of[int(key)] != exclude
        ]
        return hits[:k]

    def save(self, path: Path) -> None:
        """Write the graph to ``path`` and the ids to ``path`` + ``.ids.json``."""
        self._index.save(str(path))
        meta: dict[str, Any] = {"dims": self.dims, "scalar": self.scalar, "params": self.params}
        meta["ids"] = {str(k): v for k, v in self._id_of.items()}
        Path(f"{path}.ids.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index written by :meth:`save`."""
        meta = json.loads(Path(f"{path}.ids.json").read_text(encoding="utf-8"))
        index = cls(int(meta["dims"]), scalar=meta["scalar"], **meta["params"])
        index._index.load(str(path))
        index._id_of = {int(k): v for k, v in meta["ids"].items()}
        index._key_of = {v: k for k, v in index._id_of.items()}
        index._next_key = max(index._id_of, default=-1) + 1
        return index
