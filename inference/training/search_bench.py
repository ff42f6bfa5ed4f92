"""``vitrine bench search``: the visual-search index at catalogue scale, against exact search.

The base set starts from real descriptors: every train and val photo of the
data set and its mirror image, through the shipped model and projection (5,872
vectors). It is grown to ``n`` (default 100,000) with synthetic vectors drawn
like real listings: a real descriptor moved part of the way towards another
(a random mixture, weight up to 0.5) plus Gaussian noise, re-normalised. So the
set keeps the real clusters (81 products, many near-duplicate photos) rather
than being uniform noise, on which HNSW recall is known to look worse than in
use. Queries are 1,000 other such draws, never in the base set.

For each index setting it reports recall@10 against exact brute-force search
on the same vectors, single-query latency (p50, p99: one query at a time, as
the worker serves them), memory per million vectors (usearch's own count, less
the empty index) and the indexing rate; exact numpy search is the baseline row.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.serving.engine import Engine
from inference.serving.search import EmbeddingProjection, VectorIndex, exact_search, l2_normalise
from inference.training.search_eval import split_embeddings

__all__ = ["SearchBenchRow", "bench_search", "format_bench", "real_descriptors", "synthetic_set"]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SearchBenchRow:
    """One index setting's figures."""

    index: str
    vectors: int
    dims: int
    recall_at_10: float
    p50_ms: float
    p99_ms: float
    #: Vectors + graph as serialised (no allocation slack), and per million in MiB.
    bytes_per_vector: float
    mib_per_million: float
    #: What the library had allocated (it grows in chunks), per million in MiB.
    allocated_mib_per_million: float
    #: Python objects kept per vector: the id <-> key maps (ids like ``sku-0001234567``).
    python_bytes_per_vector: float
    build_vectors_per_s: float | None
    build_threads: int | None


def real_descriptors(engine: Engine, data_dir: Path, cache_dir: Path | None) -> FloatArray:
    """The compact descriptors of every train and val photo and its mirror image."""
    projection = EmbeddingProjection.for_model(engine.manifest)
    if projection is None:
        raise ValueError(f"model {engine.model_name} has no search projection (vitrine fit-search)")
    rows = []
    for split in ("train", "val"):
        emb = split_embeddings(engine, data_dir / f"{split}.txt", cache_dir)
        rows += [projection.project(emb.embeddings), projection.project(emb.mirrored)]
    return np.concatenate(rows)


def synthetic_set(
    real: FloatArray, n: int, rng: np.random.Generator, *, noise: float = 0.05
) -> FloatArray:
    """``n`` unit vectors: real descriptors mixed part-way with others, plus noise."""
    a = real[rng.integers(0, len(real), n)]
    b = real[rng.integers(0, len(real), n)]
    w = rng.uniform(0.0, 0.5, (n, 1)).astype(np.float32)
    jitter = rng.standard_normal(a.shape).astype(np.float32) * noise
    return l2_normalise((1 - w) * a + w * b + jitter)


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


def _percentiles(times_s: Sequence[float]) -> tuple[float, float]:
    ms = 1000 * np.asarray(times_s)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _exact_row(
    base: FloatArray, queries: FloatArray, truth: npt.NDArray[np.int64]
) -> SearchBenchRow:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        idx, _ = exact_search(base, q[None, :], 10)
        times.append(time.perf_counter() - t0)
        found.append(idx[0])
    p50, p99 = _percentiles(times)
    per = float(base.itemsize * base.shape[1])
    return SearchBenchRow(
        "exact numpy f32", len(base), base.shape[1], _recall(np.stack(found), truth),
        p50, p99, per, per * 1e6 / 2**20, per * 1e6 / 2**20, 0.0, None, None,
    )  # fmt: skip


def _hnsw_rows(
    base: FloatArray,
    queries: FloatArray,
    truth: npt.NDArray[np.int64],
    scalar: str,
    efs: Sequence[int],
    threads: int,
) -> list[SearchBenchRow]:
    index = VectorIndex(base.shape[1], scalar=scalar)  # type: ignore[arg-type]
    empty = index.memory_bytes
    ids = [f"sku-{i:010d}" for i in range(len(base))]
    tracemalloc.start()
    t0 = time.perf_counter()
    index.add(ids, base, threads=threads)
    rate = len(base) / (time.perf_counter() - t0)
    python_bytes = tracemalloc.get_traced_memory()[0] / len(base)
    tracemalloc.stop()
    per = index.serialized_bytes / len(base)
    allocated = (index.memory_bytes - empty) / len(base)
    rows = []
    for ef in efs:
        index.expansion_search = ef
        times, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            hits = index.search(q, 10)
            times.append(time.perf_counter() - t0)
            found.append([int(h.id[4:]) for h in hits])
        p50, p99 = _percentiles(times)
        rows.append(
            SearchBenchRow(
                f"usearch hnsw {scalar} M=16 ef={ef}",
                len(base),
                base.shape[1],
                _recall(np.asarray(found), truth),
                p50,
                p99,
                per,
                per * 1e6 / 2**20,
                allocated * 1e6 / 2**20,
                python_bytes,
                rate,
                threads,
            )
        )
    return rows


def bench_search(
    real: FloatArray,
    *,
    n: int = 100_000,
    n_queries: int = 1000,
    efs: Sequence[int] = (32, 64, 128, 256),
    scalars: Sequence[str] = ("f16", "i8"),
    threads: int = 2,
    seed: int = 7,
) -> list[SearchBenchRow]:
    """Exact search and each HNSW setting on ``n`` vectors grown from ``real``."""
    rng = np.random.default_rng(seed)
    base = np.concatenate([real, synthetic_set(real, max(0, n - len(real)), rng)])[:n]
    queries = synthetic_set(real, n_queries, rng)
    truth, _ = exact_search(base, queries, 10)
    rows = [_exact_row(base, queries, truth)]
    for scalar in scalars:
        rows += _hnsw_rows(base, queries, truth, scalar, efs, threads)
    return rows


def format_bench(rows: Sequence[SearchBenchRow]) -> str:
    """The rows as a plain-text table."""
    head = (
        f"{'index':<30}{'vectors':>9}{'recall@10':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'B/vector':>10}{'MiB/1M':>9}{'alloc/1M':>10}{'py B/vec':>10}{'build vec/s':>13}"
    )
    lines = [head]
    for r in rows:
        build = f"{r.build_vectors_per_s:,.0f}" if r.build_vectors_per_s else "-"
        lines.append(
            f"{r.index:<30}{r.vectors:>9,}{r.recall_at_10:>11.4f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}"
            f"{r.bytes_per_vector:>10.0f}{r.mib_per_million:>9.0f}"
            f"{r.allocated_mib_per_million:>10.0f}{r.python_bytes_per_vector:>10.0f}{build:>13}"
        )
    return "\n".join(lines)


def bench_json(rows: Sequence[SearchBenchRow]) -> str:
    """The rows as a JSON document."""
    return json.dumps({"rows": [asdict(r) for r in rows]}, indent=2)
