"""Heads trained in numpy on synthetic features; folding for export."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training.head import HeadConfig, class_weights, fit_temperature, softmax, train_head


def _blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(4, 16))
    x = np.concatenate([c + rng.normal(0, 1, size=(n_per_class, 16)) for c in centres])
    # Features on very different scales, as pooled CNN features are.
    x *= np.linspace(0.1, 10, 16)
    return x.astype(np.float32), np.repeat(np.arange(4), n_per_class)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_head_separates_blobs_and_folds_exactly(kind: str) -> None:
    x, y = _blobs(40, 0)
    xv, yv = _blobs(10, 0)
    cfg = HeadConfig(kind=kind, hidden=32, max_epochs=40, batch_size=32, seed=1)
    head, history = train_head(x, y, xv, yv, 4, cfg, progress=False)
    assert (head.predict_proba(xv).argmax(1) == yv).mean() >= 0.95
    assert history.val_accuracy
    assert 0 <= history.best_epoch < len(history.train_loss)
    # The export folds standardisation and temperature into plain affine layers.
    h = xv.astype(np.float32)
    layers = head.folded_layers()
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(softmax(h), head.predict_proba(xv), atol=1e-5)


def test_same_seed_same_head() -> None:
    x, y = _blobs(20, 2)
    cfg = HeadConfig(kind="mlp", hidden=16, max_epochs=5, seed=3)
    a, _ = train_head(x, y, x[:8], y[:8], 4, cfg, progress=False)
    b, _ = train_head(x, y, x[:8], y[:8], 4, cfg, progress=False)
    for (wa, ba), (wb, bb) in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(wa, wb)
        assert np.array_equal(ba, bb)


def test_class_weights_balance_classes() -> None:
    y = np.array([0] * 8 + [1] * 2)
    w = class_weights(y, 3)
    assert w[0] * 8 == pytest.approx(w[1] * 2)  # each class weighs the same in total
    assert w[y].mean() == pytest.approx(1.0)
    assert w[2] == 0.0


def test_temperature_undoes_a_known_scaling() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    # Logits 3x too confident: the fitted temperature should be about 3.
    assert fit_temperature(true_logits * 3, y) == pytest.approx(3.0, rel=0.15)
