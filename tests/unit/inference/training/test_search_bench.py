"""The search benchmark's synthetic set and its rows, on a small clustered set."""

from __future__ import annotations

import numpy as np

from inference.serving.search import l2_normalise
from inference.training.search_bench import bench_search, format_bench, synthetic_set


def real_like(n: int = 600, dims: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, dims))
    return l2_normalise(centres[rng.integers(0, 20, n)] + 0.2 * rng.standard_normal((n, dims)))


def test_synthetic_vectors_are_unit_length_and_near_the_real_ones() -> None:
    real = real_like()
    synth = synthetic_set(real, 500, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(synth, axis=1), 1.0, rtol=1e-5)
    # Each lies close to some real descriptor (mixtures of at most half + noise).
    assert np.median((synth @ real.T).max(axis=1)) > 0.8


def test_rows_compare_hnsw_with_exact_search() -> None:
    rows = bench_search(real_like(), n=3000, n_queries=100, efs=(16, 128), scalars=("f16",))
    exact, low, high = rows
    assert exact.index.startswith("exact")
    assert exact.recall_at_10 > 0.99
    assert exact.build_vectors_per_s is None
    assert low.vectors == high.vectors == 3000
    assert high.recall_at_10 >= low.recall_at_10
    assert high.recall_at_10 > 0.9
    # f16 vectors (64 B at 32 dims) plus the graph.
    assert 64 < high.bytes_per_vector < 64 + 400
    assert "ef=128" in format_bench(rows)
