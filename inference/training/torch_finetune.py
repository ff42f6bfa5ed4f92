"""Fine-tune the backbone's last blocks with the head, in PyTorch, from cached cut features.

Optional: only runs where ``torch`` is importable (a GPU machine, or an
environment with the ``torch`` extra); nothing else in vitrine imports it, and
this module imports it only inside :func:`finetune_tail`. The tail (the graph
from a cut tensor to the pooled features, :class:`inference.training.tail.Tail`)
is rebuilt op by op from the ONNX nodes, with the graph's own (batch-norm
folded) convolution weights as parameters, so the tuned values go straight
back into the same initializers and the exported model keeps the shape and
speed of the backbone.

Each epoch sees one cached view per training image, drawn at random from its
serving view and augmented views; early stopping on validation accuracy keeps
the best epoch.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from inference.training.head import Head, class_weights, fit_temperature
from inference.training.tail import Tail

__all__ = [
    "TailFinetuneConfig",
    "TailFinetuneResult",
    "check_tail",
    "finetune_tail",
    "torch_available",
]

logger = logging.getLogger(__name__)


def torch_available() -> bool:
    """Whether PyTorch can be imported here (without importing it)."""
    return importlib.util.find_spec("torch") is not None


@dataclass(frozen=True)
class TailFinetuneConfig:
    """Hyper-parameters of the joint tail + head fine-tuning (recorded in the metadata)."""

    min_convs: int = 4  # EfficientNet-Lite0: the last MBConv block and the head conv
    epochs: int = 15
    tail_lr: float = 1e-4
    head_lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    label_smoothing: float = 0.1
    dropout: float = 0.3
    patience: int = 5
    class_balance: bool = True
    threads: int = 0
    seed: int = 0


@dataclass
class TailFinetuneResult:
    """Tuned initializer values, the tuned head, and per-epoch validation accuracy."""

    initializers: dict[str, np.ndarray]
    head: Head
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    device: str = "cpu"
    val_embedding: np.ndarray | None = None


def _conv(torch: Any, x: Any, w: Any, b: Any, attrs: dict[str, Any]) -> Any:
    f = torch.nn.functional
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"Conv auto_pad={attrs['auto_pad']!r} is not supported")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    top, left, bottom, right = pads if len(pads) == 4 else (0, 0, 0, 0)
    padding: tuple[int, int] = (top, left)
    if (top, left) != (bottom, right):
        x = f.pad(x, (left, right, top, bottom))
        padding = (0, 0)
    return f.conv2d(
        x,
        w,
        b,
        stride=tuple(attrs.get("strides", [1, 1])),
        padding=padding,
        dilation=tuple(attrs.get("dilations", [1, 1])),
        groups=int(attrs.get("group", 1)),
    )


def _run_tail(torch: Any, tail: Tail, tensors: dict[str, Any], x: Any) -> Any:
    """Evaluate the tail's nodes on ``x`` (N, C, H, W); return the pooled (N, C) features."""
    env = {tail.cut: x}

    def get(name: str) -> Any:
        return env[name] if name in env else tensors[name]

    for node in tail.nodes:
        ins: list[Any] = [get(i) if i else None for i in node.inputs]
        if node.op == "Conv":
            out = _conv(torch, ins[0], ins[1], ins[2] if len(ins) > 2 else None, node.attrs)
        elif node.op == "Clip":
            lo = float(ins[1]) if len(ins) > 1 and ins[1] is not None else node.attrs.get("min")
            hi = float(ins[2]) if len(ins) > 2 and ins[2] is not None else node.attrs.get("max")
            out = torch.clamp(ins[0], min=lo, max=hi)
        elif node.op == "Relu":
            out = torch.relu(ins[0])
        elif node.op == "Sigmoid":
            out = torch.sigmoid(ins[0])
        elif node.op == "Add":
            out = ins[0] + ins[1]
        elif node.op == "Mul":
            out = ins[0] * ins[1]
        elif node.op == "GlobalAveragePool":
            out = ins[0].mean(dim=(2, 3), keepdim=True)
        elif node.op == "ReduceMean":
            axes = node.attrs.get("axes")
            if axes is None and len(ins) > 1 and ins[1] is not None:
                axes = [int(a) for a in ins[1].reshape(-1).tolist()]
            keep = bool(node.attrs.get("keepdims", 1))
            out = ins[0].mean(dim=tuple(axes or [2, 3]), keepdim=keep)
        else:  # pragma: no cover - find_tail only returns supported ops
            raise ValueError(f"op {node.op} is not supported in a tail")
        env[node.outputs[0]] = out
    return env[tail.pooled].flatten(1)


def check_tail(tail: Tail, x: np.ndarray, embedding: np.ndarray) -> float:
    """Relative max error of the rebuilt tail against the graph's embedding on the same images."""
    import torch  # noqa: PLC0415 - optional dependency, imported only here

    tensors = {
        n: torch.from_numpy(np.array(v, np.float32 if v.dtype.kind == "f" else None, copy=True))
        for n, v in tail.constants.items()
    }
    with torch.no_grad():
        got = _run_tail(torch, tail, tensors, torch.from_numpy(x.astype(np.float32))).numpy()
    scale = max(1e-6, float(np.abs(embedding).max()))
    return float(np.abs(got - embedding).max() / scale)


class _TailModel:
    """The tail's tensors and the head's parameters on one device, with the forward passes."""

    def __init__(self, torch: Any, tail: Tail, head: Head, config: TailFinetuneConfig) -> None:
        self.torch = torch
        self.tail = tail
        self.config = config
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        trainable = set(tail.trainable)
        self.tensors: dict[str, Any] = {}
        self.tail_params: list[Any] = []
        for name, value in tail.constants.items():
            t = self.tensor(value) if value.dtype.kind == "f" else torch.from_numpy(value.copy())
            if name in trainable:
                t = torch.nn.Parameter(t)
                self.tail_params.append(t)
            self.tensors[name] = t
        self.head_params = [
            torch.nn.Parameter(self.tensor(a)) for layer in head.layers for a in layer
        ]
        self.mean, self.scale = self.tensor(head.mean), self.tensor(head.scale)

    def tensor(self, a: np.ndarray) -> Any:
        """A float32 copy of ``a`` on the training device."""
        return self.torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).to(self.device)

    def logits_of(self, x: Any, train: bool) -> Any:
        """Head logits of cut features ``x``; dropout between layers only when training."""
        h = (_run_tail(self.torch, self.tail, self.tensors, x) - self.mean) * self.scale
        params = self.head_params
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = self.torch.relu(h)
                if train and self.config.dropout > 0:
                    h = self.torch.nn.functional.dropout(h, self.config.dropout, training=True)
        return h

    def predict(self, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and pooled embeddings of ``x_val``, in batches of 256, without gradients."""
        outs, embs = [], []
        with self.torch.no_grad():
            for start in range(0, len(x_val), 256):
                xb = self.tensor(x_val[start : start + 256])
                emb = _run_tail(self.torch, self.tail, self.tensors, xb)
                embs.append(emb.cpu().numpy())
                outs.append(self.logits_of(xb, False).cpu().numpy())
        return np.concatenate(outs), np.concatenate(embs)

    def snapshot(self) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """Copies of the trainable tail values and the head parameters."""
        tuned = {n: self.tensors[n].detach().cpu().numpy().copy() for n in self.tail.trainable}
        return tuned, [p.detach().cpu().numpy().copy() for p in self.head_params]

    def restore(self, tuned: dict[str, np.ndarray], head_values: list[np.ndarray]) -> None:
        """Load a :meth:`snapshot` back into the live tensors."""
        with self.torch.no_grad():
            for name, value in tuned.items():
                self.tensors[name].copy_(self.tensor(value))
            for p, value in zip(self.head_params, head_values, strict=True):
                p.copy_(self.tensor(value))


def _make_optimiser(
    model: _TailModel, config: TailFinetuneConfig, steps_per_epoch: int
) -> tuple[Any, Any]:
    """AdamW with separate tail and head learning rates, on a cosine schedule over all steps."""
    torch = model.torch
    optimiser = torch.optim.AdamW(
        [
            {"params": model.tail_params, "lr": config.tail_lr},
            {"params": model.head_params, "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=steps_per_epoch * config.epochs
    )
    return optimiser, scheduler


def _train_epochs(
    model: _TailModel,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    groups: np.ndarray,
    weight: Any,
    best_acc: float,
    progress: bool,
) -> tuple[tuple[dict[str, np.ndarray], list[np.ndarray]], int, float, list[float]]:
    """Run the epochs with early stopping on validation accuracy.

    Returns the best snapshot, its epoch and accuracy, and the per-epoch
    validation accuracy (without validation data every epoch counts as best).
    """
    torch, config, device = model.torch, model.config, model.device
    rng = np.random.default_rng(config.seed)
    images = np.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in images}
    steps_per_epoch = max(1, math.ceil(len(images) / config.batch_size))
    optimiser, scheduler = _make_optimiser(model, config, steps_per_epoch)
    has_val = len(y_val) > 0
    best = model.snapshot()
    best_epoch, since_best = -1, 0
    history: list[float] = []
    bar = tqdm(
        range(config.epochs), desc="fine-tune last blocks", unit="epoch", disable=not progress
    )
    for epoch in bar:
        picks = np.array([rng.choice(rows_of[g]) for g in images])
        rng.shuffle(picks)
        for start in range(0, len(picks), config.batch_size):
            idx = np.sort(picks[start : start + config.batch_size])
            xb, yb = model.tensor(x_train[idx]), torch.from_numpy(y_train[idx]).to(device)
            loss = torch.nn.functional.cross_entropy(
                model.logits_of(xb, True), yb, weight=weight, label_smoothing=config.label_smoothing
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
        if not has_val:
            best, best_epoch = model.snapshot(), epoch
            continue
        val_logits, _ = model.predict(x_val)
        acc = float((val_logits.argmax(1) == y_val).mean())
        history.append(acc)
        bar.set_postfix(val_acc=f"{acc:.3f}")
        if acc > best_acc:
            best_acc, best_epoch, since_best = acc, epoch, 0
            best = model.snapshot()
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    bar.close()
    return best, best_epoch, best_acc, history


def finetune_tail(
    tail: Tail,
    head: Head,
    x_train: np.ndarray,
    groups: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TailFinetuneConfig,
    *,
    progress: bool = True,
) -> TailFinetuneResult:
    """Train the tail's convolutions and ``head`` jointly from cut features.

    ``x_train`` (rows, C, H, W) holds every cached view; ``groups`` gives each
    row's image, and an epoch takes one random row per image. ``head`` is the
    head trained on the frozen embedding; its standardisation stays fixed.
    """
    import torch  # noqa: PLC0415 - optional dependency, imported only here

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    n_classes = head.layers[-1][0].shape[1]
    model = _TailModel(torch, tail, head, config)
    device = model.device
    cw = class_weights(y_train, n_classes) if config.class_balance else np.ones(n_classes)
    weight = model.tensor(cw)

    has_val = len(y_val) > 0
    start_logits, _ = model.predict(x_val) if has_val else (np.zeros((0, n_classes)), None)
    best_acc = float((start_logits.argmax(1) == y_val).mean()) if has_val else -1.0
    logger.info(
        "fine-tune (%s, %d convs): starting val accuracy %.4f", device, tail.n_convs, best_acc
    )
    best, best_epoch, best_acc, history = _train_epochs(
        model, x_train, y_train, x_val, y_val, groups, weight, best_acc, progress
    )

    tuned, head_values = best
    model.restore(tuned, head_values)
    layers = [(head_values[i], head_values[i + 1]) for i in range(0, len(head_values), 2)]
    new_head = Head(head.kind, head.mean, head.scale, layers)
    val_embedding = None
    if has_val:
        val_logits, val_embedding = model.predict(x_val)
        new_head.temperature = fit_temperature(val_logits, y_val)
    logger.info(
        "fine-tune: best epoch %d, val accuracy %.4f, temperature %.2f",
        best_epoch + 1,
        best_acc,
        new_head.temperature,
    )
    return TailFinetuneResult(tuned, new_head, history, best_epoch, device, val_embedding)
