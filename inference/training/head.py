"""Classification heads on frozen backbone features, trained in numpy.

Two heads, chosen per data set on the validation split (``kind="auto"``):

* ``linear``: multinomial logistic regression (one affine layer + softmax);
  a convex problem, stable with a few images per class, and as fast as a head
  can be at serving time;
* ``mlp``: one hidden ReLU layer with dropout, which can bend the decision
  boundaries where classes differ by a detail (a carton's brand, an apple's
  variety) and usually wins once there are tens of images per class.

Both train with minibatch Adam (decoupled weight decay), a class-balanced
cross-entropy with label smoothing, on standardised features, and stop early
on validation accuracy (ties broken by validation loss), keeping the best
epoch's weights. A temperature fitted on the validation split then calibrates
the probabilities. The standardisation and temperature fold into the layer
weights, so the exported graph is plain Gemm (+ Relu) + Softmax.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

__all__ = ["Head", "HeadConfig", "TrainHistory", "class_weights", "fit_temperature", "train_head"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of a head (recorded in the model's metadata)."""

    kind: str = "mlp"  # "linear" | "mlp"
    hidden: int = 1024
    dropout: float = 0.5
    input_dropout: float = 0.2
    weight_decay: float = 1e-4
    lr: float = 1e-3
    max_epochs: int = 60
    batch_size: int = 256
    patience: int = 10
    label_smoothing: float = 0.1
    class_balance: bool = True
    seed: int = 0


@dataclass
class TrainHistory:
    """Per-epoch training loss and validation metrics."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0


@dataclass
class Head:
    """A trained head: standardisation, affine layers (ReLU between), temperature."""

    kind: str
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,) 1 / std
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W (in, out), b (out,))
    temperature: float = 1.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Calibrated logits for raw backbone features (N, D)."""
        h = (x.astype(np.float32) - self.mean) * self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                np.maximum(h, 0, out=h)
        out: np.ndarray = h / self.temperature
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C)."""
        return softmax(self.logits(x))

    def folded_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Layers with the standardisation and temperature folded in (for export)."""
        out = [(w.copy(), b.copy()) for w, b in self.layers]
        w0, b0 = out[0]
        out[0] = (w0 * self.scale[:, None], b0 - (self.mean * self.scale) @ w0)
        wl, bl = out[-1]
        out[-1] = (wl / self.temperature, bl / self.temperature)
        return [(w.astype(np.float32), b.astype(np.float32)) for w, b in out]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weight per class, so every class weighs the same in the loss.

    Scaled so the average weight over the samples is 1 (the loss keeps its
    usual size); classes with no samples get weight 0.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = 1.0 / counts[present]
    w *= len(labels) / float((w[labels]).sum())
    return w.astype(np.float32)


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


#: Fewer validation images than this: no temperature is fitted (T = 1). On a
#: handful of images that are all right, the NLL keeps falling as T -> 0.
MIN_IMAGES_FOR_TEMPERATURE = 30


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature in [0.2, 5] minimising the NLL of ``softmax(logits / T)`` on held-out data.

    Returns 1 when there are fewer than ``MIN_IMAGES_FOR_TEMPERATURE`` rows.
    """
    if len(y) < MIN_IMAGES_FOR_TEMPERATURE:
        return 1.0
    grid = np.exp(np.linspace(math.log(0.2), math.log(5.0), 81))
    losses = [_nll(softmax(logits / t), y) for t in grid]
    best = int(np.argmin(losses))
    # Refine around the best grid point.
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.linspace(lo, hi, 41)
    fine_losses = [_nll(softmax(logits / t), y) for t in fine]
    return float(fine[int(np.argmin(fine_losses))])


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float) -> None:
        self.params = params
        self.lr = lr
        self.wd = weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1 = 1 - b1**self.t
        c2 = 1 - b2**self.t
        for i, g in enumerate(grads):
            p, m, v = self.params[i], self.m[i], self.v[i]
            np.multiply(m, b1, out=m)
            np.add(m, (1 - b1) * g, out=m)
            np.multiply(v, b2, out=v)
            np.add(v, (1 - b2) * g * g, out=v)
            if p.ndim > 1 and self.wd:  # decay weights, not biases
                np.multiply(p, 1 - lr * self.wd, out=p)
            np.subtract(p, lr * (m / c1) / (np.sqrt(v / c2) + eps), out=p)


def _init_layers(
    kind: str, d: int, n_classes: int, hidden: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    dims = [d, n_classes] if kind == "linear" else [d, hidden, n_classes]
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        last = i == len(dims) - 2
        std = 0.01 if last else math.sqrt(2.0 / fan_in)
        w = (rng.standard_normal((fan_in, fan_out)) * std).astype(np.float32)
        layers.append((w, np.zeros(fan_out, np.float32)))
    return layers


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: HeadConfig,
    *,
    progress: bool = True,
) -> tuple[Head, TrainHistory]:
    """Train one head; early-stop on (x_val, y_val) when it is not empty."""
    if config.kind not in ("linear", "mlp"):
        raise ValueError(f"head kind must be 'linear' or 'mlp', got {config.kind!r}")
    rng = np.random.default_rng(config.seed)
    x_train = x_train.astype(np.float32)
    mean = x_train.mean(axis=0)
    scale = (1.0 / np.maximum(x_train.std(axis=0), 1e-3)).astype(np.float32)
    xs = (x_train - mean) * scale
    xv = (x_val.astype(np.float32) - mean) * scale
    has_val = len(y_val) > 0

    layers = _init_layers(config.kind, xs.shape[1], n_classes, config.hidden, rng)
    params = [p for layer in layers for p in layer]
    opt = _Adam(params, config.lr, config.weight_decay)
    cw = (
        class_weights(y_train, n_classes)
        if config.class_balance
        else np.ones(n_classes, np.float32)
    )
    n = len(y_train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total_steps = steps_per_epoch * config.max_epochs
    history = TrainHistory()
    best: tuple[float, float] = (-1.0, math.inf)
    best_layers = [(w.copy(), b.copy()) for w, b in layers]
    since_best = 0
    step = 0

    bar = tqdm(
        range(config.max_epochs), desc=f"{config.kind} head", unit="epoch", disable=not progress
    )
    for epoch in bar:
        epoch_loss, step = _epoch(
            layers, opt, xs, y_train, cw, config, rng, n_classes, step, total_steps
        )
        history.train_loss.append(epoch_loss / n)
        if not has_val:
            best_layers = [(w.copy(), b.copy()) for w, b in layers]
            history.best_epoch = epoch
            continue
        probs = softmax(_forward(layers, xv))
        acc = float((probs.argmax(axis=1) == y_val).mean())
        vloss = _nll(probs, y_val)
        history.val_accuracy.append(acc)
        history.val_loss.append(vloss)
        bar.set_postfix(val_acc=f"{acc:.3f}", val_loss=f"{vloss:.3f}")
        if acc > best[0] or (acc == best[0] and vloss < best[1]):
            best = (acc, vloss)
            best_layers = [(w.copy(), b.copy()) for w, b in layers]
            history.best_epoch = epoch
            since_best = 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    bar.close()

    head = Head(config.kind, mean.astype(np.float32), scale, best_layers)
    if has_val:
        head.temperature = fit_temperature(_forward(best_layers, xv), y_val)
    logger.info(
        "%s head: best epoch %d of %d, val accuracy %s, temperature %.2f",
        config.kind,
        history.best_epoch + 1,
        len(history.train_loss),
        f"{best[0]:.4f}" if has_val else "n/a",
        head.temperature,
    )
    return head, history


def _epoch(
    layers: list[tuple[np.ndarray, np.ndarray]],
    opt: _Adam,
    xs: np.ndarray,
    y_train: np.ndarray,
    cw: np.ndarray,
    config: HeadConfig,
    rng: np.random.Generator,
    n_classes: int,
    step: int,
    total_steps: int,
) -> tuple[float, int]:
    """One pass over the shuffled training set; returns (summed loss, steps taken so far)."""
    n = len(y_train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    order = rng.permutation(n)
    epoch_loss = 0.0
    for start in range(0, n, config.batch_size):
        idx = order[start : start + config.batch_size]
        # Cosine decay with a short warm-up.
        warm = min(1.0, (step + 1) / (2 * steps_per_epoch))
        lr = config.lr * warm * 0.5 * (1 + math.cos(math.pi * step / total_steps))
        loss, grads = _loss_and_grads(
            layers, xs[idx], y_train[idx], cw, config.label_smoothing, config, rng, n_classes
        )
        opt.step(grads, lr)
        epoch_loss += loss * len(idx)
        step += 1
    return epoch_loss, step


def _forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def _loss_and_grads(
    layers: list[tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    cw: np.ndarray,
    eps: float,
    config: HeadConfig,
    rng: np.random.Generator,
    n_classes: int,
) -> tuple[float, list[np.ndarray]]:
    """Weighted, label-smoothed cross-entropy and its gradients (dropout on the MLP)."""
    m = len(y)
    acts = [x]
    masks: list[np.ndarray | None] = []
    h = x
    if config.kind == "mlp" and config.input_dropout > 0:
        keep = (rng.random(h.shape) >= config.input_dropout) / (1 - config.input_dropout)
        h = h * keep.astype(np.float32)
        acts[0] = h
    for i, (w, b) in enumerate(layers):
        z = h @ w + b
        if i < len(layers) - 1:
            z = np.maximum(z, 0)
            mask = None
            if config.dropout > 0:
                mask = ((rng.random(z.shape) >= config.dropout) / (1 - config.dropout)).astype(
                    np.float32
                )
                z = z * mask
            masks.append(mask)
            acts.append(z)
        h = z
    probs = softmax(h)
    target = np.full((m, n_classes), eps / n_classes, np.float32)
    target[np.arange(m), y] += 1 - eps
    sw = cw[y]
    loss = float(-(sw * (target * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)).mean())
    delta = (probs - target) * (sw / m)[:, None]
    grads: list[np.ndarray] = []
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        a = acts[i]
        grads = [a.T @ delta, delta.sum(axis=0), *grads]
        if i > 0:
            delta = delta @ w.T
            mask = masks[i - 1]
            if mask is not None:
                delta = delta * mask
            delta = delta * (acts[i] > 0)
    return loss, [g.astype(np.float32) for g in grads]
