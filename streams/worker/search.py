"""Visual search in the worker: the index every worker keeps, fed from ``product-embeddings``.

The image agent publishes each labelled product's compact descriptor
(:class:`~schemas.records.ProductEmbedding`, key product_id) to the compacted
``product-embeddings`` topic (:func:`embedding_record`). Every worker reads that
whole topic, all partitions, outside any consumer group
(:class:`EmbeddingFollower`, a :class:`~streams.worker.follower.TopicFollower`),
from the beginning at start and then as it grows,
into its in-process HNSW index (:class:`SearchIndex`). So each worker answers
``/similar`` for the whole catalogue, and a restarted worker rebuilds its index
from Kafka without inferring any image again; compaction keeps the topic at one
record per product. Descriptors of another model version (a different
projection) are skipped: they are not comparable.

Index writes and queries both run on the event loop, so they never interleave;
a query of the HNSW graph takes well under a millisecond (``vitrine bench search``).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.serving.search import VectorIndex, decode_vector, encode_vector
from schemas import codec
from schemas.errors import SchemaError
from schemas.records import SCHEMA_VERSION, ProductEmbedding
from streams.worker import metrics
from streams.worker.follower import TopicFollower
from streams.worker.imageresult import ImageResult

__all__ = ["EmbeddingFollower", "Listed", "Neighbour", "SearchIndex", "embedding_record"]

logger = logging.getLogger(__name__)


def embedding_record(
    *,
    event_id: str,
    occurred_at: datetime,
    product_id: str,
    image_sha256: str,
    result: ImageResult,
) -> bytes | None:
    """The ``product-embeddings`` value of a labelled product, or None without a descriptor."""
    vector = result.vector
    if not vector:
        return None
    return codec.encode(
        ProductEmbedding(
            schema_version=SCHEMA_VERSION,
            event_id=event_id,
            occurred_at=occurred_at,
            product_id=product_id,
            image_sha256=image_sha256,
            category=result.category,
            label=result.label,
            model_name=result.model_name,
            model_version=result.model_version,
            dims=len(base64.b64decode(vector)) // 2,
            vector_f16_b64=vector,
        )
    )


def vector_b64(vector: npt.ArrayLike) -> str:
    """A descriptor as the base64 of its float16 bytes (the cache's and the topic's form)."""
    return base64.b64encode(encode_vector(vector)).decode("ascii")


@dataclass(frozen=True)
class Neighbour:
    """A product that looks like the query."""

    product_id: str
    score: float
    category: str
    label: str
    image_sha256: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``/similar`` answers."""
        return {
            "product_id": self.product_id,
            "score": self.score,
            "category": self.category,
            "label": self.label,
            "image_sha256": self.image_sha256,
        }


@dataclass(frozen=True, slots=True)
class Listed:
    """What the index keeps of a product beside its vector (a few hundred bytes)."""

    category: str
    label: str
    image_sha256: str


class SearchIndex:
    """The products' descriptors of one model version, with their categories and labels."""

    def __init__(self, dims: int, model_version: str, *, expansion_search: int = 64) -> None:
        self.dims = dims
        self.model_version = model_version
        self.index = VectorIndex(dims, expansion_search=expansion_search)
        self._meta: dict[str, Listed] = {}

    def __len__(self) -> int:
        return len(self.index)

    def apply(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Apply ``product-embeddings`` records (key, value); a null value removes its key."""
        ids: list[str] = []
        vectors: list[npt.NDArray[np.float32]] = []
        for key, value in records:
            if value is None:
                if key is not None:
                    self._remove(key.decode())
                continue
            try:
                rec = codec.decode_product_embedding(value)
                vector = decode_vector(base64.b64decode(rec.vector_f16_b64, validate=True))
            except (SchemaError, ValueError):
                metrics.SEARCH_UPDATES.labels("invalid").inc()
                continue
            if rec.model_version != self.model_version or len(vector) != self.dims:
                metrics.SEARCH_UPDATES.labels("other_model").inc()
                continue
            self._meta[rec.product_id] = Listed(rec.category, rec.label, rec.image_sha256)
            ids.append(rec.product_id)
            vectors.append(vector)
        if ids:
            self.index.add(ids, np.stack(vectors))
            metrics.SEARCH_UPDATES.labels("indexed").inc(len(ids))
        metrics.SEARCH_INDEXED.set(len(self.index))

    def save(self, directory: Path, *, topic: str, positions: Mapping[int, int]) -> None:
        """Write the index, its products and the topic offsets it covers into ``directory``.

        Written beside it first and renamed, so a crash leaves the old snapshot or none.
        """
        new = directory.with_name(directory.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        self.index.save(new / "index.usearch")
        state = {
            "topic": topic,
            "model_version": self.model_version,
            "dims": self.dims,
            "positions": {str(p): o for p, o in positions.items()},
            "products": {k: [m.category, m.label, m.image_sha256] for k, m in self._meta.items()},
        }
        (new / "state.json").write_text(json.dumps(state), encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        new.rename(directory)

    def load(self, directory: Path, *, topic: str) -> dict[int, int] | None:
        """Replace this (empty) index with a snapshot of the same topic and model.

        Returns the partition offsets to read on from, or None (and changes
        nothing) when there is no usable snapshot.
        """
        try:
            state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
            if (state["topic"], state["model_version"], state["dims"]) != (
                topic, self.model_version, self.dims,
            ):  # fmt: skip
                logger.info("search snapshot %s is of another topic or model: not used", directory)
                return None
            index = VectorIndex.load(directory / "index.usearch")
            meta = {k: Listed(*v) for k, v in state["products"].items()}
            if set(meta) != set(index.ids()):
                raise ValueError("its index and its products differ")
            positions = {int(p): int(o) for p, o in state["positions"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            logger.warning("search snapshot %s unreadable (%s): not used", directory, exc)
            return None
        index.expansion_search = self.index.expansion_search
        self.index, self._meta = index, meta
        metrics.SEARCH_INDEXED.set(len(index))
        return positions

    def _remove(self, product_id: str) -> None:
        if product_id in self._meta:
            del self._meta[product_id]
            self.index.remove([product_id])
            metrics.SEARCH_UPDATES.labels("removed").inc()

    def vector_of(self, product_id: str) -> npt.NDArray[np.float32] | None:
        """The indexed descriptor of ``product_id``, or None."""
        return self.index.vector(product_id)

    def meta(self, product_id: str) -> Listed | None:
        """What the topic said about ``product_id`` last."""
        return self._meta.get(product_id)

    def similar(
        self,
        vector: npt.ArrayLike,
        k: int,
        *,
        category: str | None = None,
        exclude: str | None = None,
        kind: str = "image",
    ) -> list[Neighbour]:
        """The ``k`` products nearest ``vector``; only ``category``'s when given."""
        started = time.perf_counter()
        # A category filter takes a wider pass and filters it (categories are few
        # and large here; a catalogue with many small ones would index per category).
        want = k if category is None else min(len(self.index), 10 * k)
        hits = self.index.search(vector, want, exclude=exclude)
        out = []
        for hit in hits:
            rec = self._meta[hit.id]
            if category is None or rec.category == category:
                out.append(Neighbour(hit.id, hit.score, rec.category, rec.label, rec.image_sha256))
        metrics.SEARCH_SECONDS.observe(time.perf_counter() - started)
        metrics.SEARCH_QUERIES.labels(kind).inc()
        return out[:k]


class EmbeddingFollower(TopicFollower[SearchIndex]):
    """Reads every partition of ``product-embeddings`` into a :class:`SearchIndex`, for good.

    A :class:`~streams.worker.follower.TopicFollower`; its snapshot (when
    configured) is the search index saved at stop and loaded at start.
    """

    def __init__(
        self,
        *,
        topic: str,
        client_config: Mapping[str, Any],
        build: Callable[[], Awaitable[SearchIndex | None]],
        max_records: int = 2000,
        snapshot: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name="search",
            topic=topic,
            client_config=client_config,
            build=build,
            max_records=max_records,
            snapshot=snapshot,
            **kwargs,
        )
