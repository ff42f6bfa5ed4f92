"""``vitrine train``: a labelled image folder (or list file) in, a servable model directory out.

Steps, each logged with its duration:

1. load the training data and the validation data (a given split, or a
   stratified fraction of the training data), and fingerprint both;
2. run the backbone over every image: the serving view of all images, and
   ``augmentations`` random views of each training image (features cached);
3. train the head(s) on the frozen features: ``linear``, ``mlp``, or ``auto``
   (both, the better on validation accuracy kept, the linear one on a tie);
4. optionally, where PyTorch is importable, fine-tune the backbone's last
   blocks with the head from features cached at a cut in the graph
   (``finetune="blocks"``, or ``"auto"``: only when torch is there); the tuned
   weights are kept only if validation accuracy improves;
5. compose one ONNX model (backbone + head), check it against the numpy head
   on validation images, and write it with its manifest.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.serving.manifest import IMAGENET_MODEL, ModelManifest, default_model_dir
from inference.training.augment import AugmentConfig
from inference.training.backbone import Backbone, load_backbone
from inference.training.compose import compose_model
from inference.training.dataset import Dataset, data_hash, load_dataset, stratified_split
from inference.training.errors import DatasetError, TrainError
from inference.training.features import EMBEDDING, FeatureSet, extract_features, hash_images
from inference.training.head import Head, HeadConfig, train_head
from inference.training.jsonsafe import json_safe
from inference.training.metrics import score
from inference.training.package import write_model_dir
from inference.training.tail import Tail, find_tail
from inference.training.torch_finetune import (
    TailFinetuneConfig,
    check_tail,
    finetune_tail,
    torch_available,
)

__all__ = [
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "default_cache_dir",
    "load_data",
    "read_categories",
    "train",
    "versions",
]

logger = logging.getLogger(__name__)

HEAD_KINDS = ("auto", "linear", "mlp")
FINETUNE_MODES = ("auto", "blocks", "none")


def default_cache_dir() -> Path:
    """Where features are cached unless told otherwise: ``~/.cache/vitrine/features``."""
    return Path.home() / ".cache" / "vitrine" / "features"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``train`` needs; the defaults are the ones measured on the Grocery Store data."""

    data: Path
    out: Path
    val_data: Path | None = None
    val_fraction: float = 0.15
    base_model: Path | None = None  # default: the shipped EfficientNet-Lite0
    name: str | None = None  # default: the output folder's name
    head: str = "auto"
    augmentations: int = 8
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    head_config: HeadConfig = field(default_factory=HeadConfig)
    epochs: int | None = None  # overrides head_config.max_epochs
    finetune: str = "none"
    finetune_config: TailFinetuneConfig = field(default_factory=TailFinetuneConfig)
    categories_file: Path | None = None
    seed: int = 0
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    batch_size: int = 32
    intra_op_threads: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    """The model directory written, its manifest, and what training measured."""

    model_dir: Path
    manifest: ModelManifest
    val_metrics: dict[str, Any]
    training: dict[str, Any]


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[step] = round(time.perf_counter() - start, 2)
            logger.info("%s: %.1f s", step, self.times[step])


def read_categories(path: Path, classes: tuple[str, ...]) -> tuple[str, ...]:
    """The category of each class from a ``class,category`` CSV (every class must be named)."""
    mapping: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].strip() and not row[0].startswith("#"):
                mapping[row[0].strip()] = row[1].strip()
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise DatasetError(
            "train.dataset_invalid",
            f"{path} gives no category for {len(missing)} class(es): {', '.join(missing[:10])}",
        )
    return tuple(mapping[c] for c in classes)


def _load_splits(config: TrainConfig) -> tuple[Dataset, Dataset, str]:
    data = load_dataset(config.data)
    if config.val_data is not None:
        val = load_dataset(config.val_data)
        if val.classes != data.classes:
            val = val.with_classes(data.classes, data.coarse)
        return data, val, str(config.val_data)
    train_idx, val_idx = stratified_split(data.labels, config.val_fraction, config.seed)
    how = f"stratified {config.val_fraction:.0%} of {config.data} (seed {config.seed})"
    return data.subset(train_idx.tolist()), data.subset(val_idx.tolist()), how


def _usable_tail(tail: Tail, val: FeatureSet) -> bool:
    """True when the rebuilt tail reproduces the graph's embedding on real images."""
    n = min(32, len(val.labels))
    err = check_tail(tail, val.features[tail.cut][:n], val.embedding[:n])
    if err > 1e-3:
        logger.warning("fine-tuning disabled: the rebuilt tail is off by %.2g (relative)", err)
        return False
    return True


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean()) if len(y) else float("nan")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape a trained model."""
    out = {"python": platform.python_version(), "onnxruntime": ort.__version__}
    for package in ("numpy", "onnx", "opencv-python-headless"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[package] = metadata.version(package)
    return out


def _check_config(config: TrainConfig) -> None:
    if config.head not in HEAD_KINDS:
        raise TrainError(
            "train.failed", f"head must be one of {', '.join(HEAD_KINDS)}, got {config.head!r}"
        )
    if config.finetune not in FINETUNE_MODES:
        raise TrainError(
            "train.failed",
            f"finetune must be one of {', '.join(FINETUNE_MODES)}, got {config.finetune!r}",
        )
    if config.augmentations < 0:
        raise TrainError("train.failed", f"augmentations must be >= 0, got {config.augmentations}")


@dataclass(frozen=True)
class TrainData:
    """The two splits, how validation was chosen, and the content hashes."""

    train: Dataset
    val: Dataset
    val_how: str
    train_hashes: list[str]
    val_hashes: list[str]
    data_hash: str


def load_data(config: TrainConfig) -> TrainData:
    """Both splits, how validation was chosen, and the images' content hashes."""
    train_set, val_set, val_how = _load_splits(config)
    train_hashes = hash_images(train_set, progress=config.progress)
    val_hashes = hash_images(val_set, progress=config.progress)
    digest = hashlib.sha256()
    digest.update(data_hash(train_set, train_hashes).encode())
    digest.update(b"|val|")
    digest.update(data_hash(val_set, val_hashes).encode())
    missing = [c for c, n in zip(train_set.classes, train_set.counts(), strict=True) if n == 0]
    if missing:
        logger.warning(
            "%d class(es) have no training image and will never be predicted: %s",
            len(missing),
            ", ".join(missing[:10]),
        )
    return TrainData(train_set, val_set, val_how, train_hashes, val_hashes, digest.hexdigest())


def _features(
    config: TrainConfig, data: TrainData, backbone: Backbone, outputs: tuple[str, ...]
) -> tuple[FeatureSet, FeatureSet]:
    common: dict[str, Any] = {
        "augment_cfg": config.augment,
        "seed": config.seed,
        "cache_dir": config.cache_dir,
        "outputs": outputs,
        "batch_size": config.batch_size,
        "intra_op_threads": config.intra_op_threads,
        "progress": config.progress,
    }
    train_feats = extract_features(
        data.train,
        backbone,
        image_hashes=data.train_hashes,
        n_augmented=config.augmentations,
        desc="train features",
        **common,
    )
    val_feats = extract_features(
        data.val,
        backbone,
        image_hashes=data.val_hashes,
        n_augmented=0,
        desc="val features",
        **common,
    )
    return train_feats, val_feats


@dataclass
class _Choice:
    """The head kept so far, with what its validation split says about it."""

    kind: str
    head: Head
    val_top1: float
    head_config: HeadConfig
    candidates: dict[str, dict[str, Any]]
    val_embedding: np.ndarray
    replace_initializers: dict[str, np.ndarray] = field(default_factory=dict)
    finetune: dict[str, Any] | None = None


def _fit_heads(
    config: TrainConfig,
    train_feats: FeatureSet,
    val_feats: FeatureSet,
    n_classes: int,
    say: Callable[[str], None],
) -> _Choice:
    """Train each head kind asked for; keep the best on validation top-1."""
    x_train, y_train = train_feats.embedding, train_feats.labels
    x_val, y_val = val_feats.embedding, val_feats.labels
    head_cfg = replace(config.head_config, seed=config.seed)
    if config.epochs is not None:
        head_cfg = replace(head_cfg, max_epochs=config.epochs)
    kinds = ("linear", "mlp") if config.head == "auto" else (config.head,)
    candidates: dict[str, dict[str, Any]] = {}
    best: tuple[float, str, Head] | None = None
    for kind in kinds:
        head, history = train_head(
            x_train,
            y_train,
            x_val,
            y_val,
            n_classes,
            replace(head_cfg, kind=kind),
            progress=config.progress,
        )
        acc = _accuracy(head.predict_proba(x_val), y_val)
        candidates[kind] = {
            "val_top1": acc,
            "best_epoch": history.best_epoch + 1,
            "epochs_run": len(history.train_loss),
            "temperature": head.temperature,
        }
        say(f"{kind} head: val top-1 {acc:.4f}")
        # Strictly better only: on a tie the earlier (simpler) kind stays.
        if best is None or (not math.isnan(acc) and acc > best[0]):
            best = (acc, kind, head)
    assert best is not None
    acc, kind, head = best
    return _Choice(kind, head, acc, replace(head_cfg, kind=kind), candidates, x_val)


def _finetune(
    config: TrainConfig,
    tail: Tail,
    choice: _Choice,
    train_feats: FeatureSet,
    val_feats: FeatureSet,
    say: Callable[[str], None],
) -> None:
    """Fine-tune the backbone's tail under the chosen head; keep it only if val improves."""
    ft_cfg = replace(config.finetune_config, seed=config.seed, threads=config.intra_op_threads)
    y_val = val_feats.labels
    result = finetune_tail(
        tail,
        choice.head,
        train_feats.features[tail.cut],
        train_feats.sample,
        train_feats.labels,
        val_feats.features[tail.cut],
        y_val,
        ft_cfg,
        progress=config.progress,
    )
    assert result.val_embedding is not None  # there is a validation split
    tuned_acc = _accuracy(result.head.predict_proba(result.val_embedding), y_val)
    # Early stopping returns the starting weights when no epoch beat them.
    kept = result.best_epoch >= 0 and tuned_acc > choice.val_top1
    choice.finetune = {
        **asdict(ft_cfg),
        "cut": tail.cut,
        "convs_tuned": tail.n_convs,
        "parameters_tuned": tail.n_parameters,
        "device": result.device,
        "val_top1_before": choice.val_top1,
        "val_top1_after": tuned_acc,
        "val_top1_per_epoch": result.val_accuracy,
        "best_epoch": result.best_epoch + 1,
        "kept": kept,
    }
    say(
        f"fine-tuned the last {tail.n_convs} convolutions: val top-1 {tuned_acc:.4f} "
        f"({'kept' if kept else 'dropped'})"
    )
    if kept:
        choice.head = result.head
        choice.replace_initializers = result.initializers
        choice.val_embedding = result.val_embedding


def _provenance(
    config: TrainConfig,
    data: TrainData,
    backbone: Backbone,
    choice: _Choice,
    train_views: int,
    val_metrics: dict[str, Any],
    consistency: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's ``training`` section: what was trained on what, how, and how well."""
    train_set, val_set, coarse = data.train, data.val, data.train.coarse
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "vitrine train",
        "seed": config.seed,
        "data": {
            "train": str(config.data),
            "val": data.val_how,
            "data_hash": data.data_hash,
            "n_classes": len(train_set.classes),
            "coarse_classes": len(set(coarse)) if coarse else None,
            "split_sizes": {"train": len(train_set), "val": len(val_set)},
            "train_views": train_views,
            "train_images_per_class": {
                "min": int(train_set.counts().min()),
                "max": int(train_set.counts().max()),
            },
            "val_classes_present": int((val_set.counts() > 0).sum()),
        },
        "base_model": {
            "name": backbone.manifest.name,
            "version": backbone.manifest.version,
            "sha256": backbone.manifest.sha256,
        },
        "augmentation": {"views_per_image": config.augmentations, **asdict(config.augment)},
        "head": {"chosen": choice.kind, **asdict(choice.head_config)},
        "head_candidates": choice.candidates,
        "finetune": choice.finetune,
        "val_metrics": val_metrics,
        "export_check": consistency,
    }


def train(config: TrainConfig, *, on_step: Callable[[str], None] | None = None) -> TrainResult:
    """Train a classifier on ``config.data`` and write it to ``config.out``."""
    _check_config(config)
    timer = _Timer()
    started = time.perf_counter()
    say = on_step or (lambda _msg: None)

    with timer("load data"):
        data = load_data(config)
    train_set, val_set = data.train, data.val
    n_classes = len(train_set.classes)
    say(f"data: {len(train_set)} training / {len(val_set)} validation images, {n_classes} classes")

    backbone: Backbone = load_backbone(config.base_model or default_model_dir(IMAGENET_MODEL))
    tail = _pick_tail(config, backbone, len(val_set))
    outputs = (EMBEDDING,) if tail is None else (EMBEDDING, tail.cut)
    with timer("features"):
        train_feats, val_feats = _features(config, data, backbone, outputs)
    if tail is not None and not _usable_tail(tail, val_feats):
        if config.finetune == "blocks":
            raise TrainError(
                "train.failed", "fine-tuning asked for, but the graph's tail could not be rebuilt"
            )
        tail = None

    with timer("head"):
        choice = _fit_heads(config, train_feats, val_feats, n_classes, say)
    if tail is not None:
        with timer("fine-tune"):
            _finetune(config, tail, choice, train_feats, val_feats, say)

    val_probs = choice.head.predict_proba(choice.val_embedding)
    coarse = train_set.coarse
    val_metrics = score(val_probs, val_feats.labels, train_set.classes, coarse_of_class=coarse)

    with timer("export"):
        model = compose_model(
            backbone.onnx_path,
            choice.head.folded_layers(),
            embedding_output=backbone.embedding_output,
            probabilities_output=backbone.manifest.probabilities_output,
            replace_initializers=choice.replace_initializers,
            doc=f"vitrine train: {backbone.manifest.name} backbone + {choice.kind} head",
        )
        consistency = _check_exported(model.SerializeToString(), backbone, val_set, val_probs)
    if config.categories_file is not None:
        categories = read_categories(config.categories_file, train_set.classes)
    else:
        categories = coarse or train_set.classes
    training = _provenance(
        config, data, backbone, choice, len(train_feats.labels), val_metrics, consistency
    )
    training["timings_s"] = {**timer.times, "total": round(time.perf_counter() - started, 2)}
    training["versions"] = versions()
    training = json_safe(training)
    manifest = write_model_dir(
        Path(config.out),
        model,
        base=backbone.manifest,
        name=config.name or Path(config.out).resolve().name,
        labels=train_set.classes,
        categories=categories,
        coarse=coarse,
        data_hash=data.data_hash,
        training=training,
    )
    say(f"wrote {config.out} ({manifest.name} {manifest.version})")
    return TrainResult(Path(config.out), manifest, training["val_metrics"], training)


def _pick_tail(config: TrainConfig, backbone: Backbone, n_val: int) -> Tail | None:
    """The graph tail to fine-tune, or None (mode "none", no torch, no validation split)."""
    if config.finetune == "none":
        return None
    if not torch_available():
        if config.finetune == "blocks":
            raise TrainError(
                "train.failed",
                "--finetune blocks needs PyTorch in this environment "
                "(pip install torch); the head alone needs no torch (--finetune none)",
            )
        logger.info("PyTorch is not installed: training the head only")
        return None
    if n_val == 0:
        if config.finetune == "blocks":
            raise TrainError(
                "train.failed", "fine-tuning needs a validation split for early stopping"
            )
        return None
    tail = find_tail(backbone, config.finetune_config.min_convs)
    if tail is None:
        message = (
            f"{backbone.onnx_path} has no tail of {config.finetune_config.min_convs}+ "
            "convolutions made of supported ops"
        )
        if config.finetune == "blocks":
            raise TrainError("train.failed", message)
        logger.warning("%s; training the head only", message)
        return None
    logger.info(
        "fine-tuning from %s: %d convolutions, %d parameters",
        tail.cut,
        tail.n_convs,
        tail.n_parameters,
    )
    return tail


def _check_exported(
    onnx_bytes: bytes, backbone: Backbone, val_set: Dataset, val_probs: np.ndarray, n: int = 16
) -> dict[str, Any]:
    """Run the composed graph on a few validation images; compare with the numpy head."""
    if len(val_set) == 0:
        return {"images": 0}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    idx = np.linspace(0, len(val_set) - 1, min(n, len(val_set))).round().astype(int)
    idx = np.unique(idx)
    images = [
        backbone.decode(val_set.samples[i].path.read_bytes(), val_set.samples[i].path) for i in idx
    ]
    crops = backbone.preprocessor.crops(images)
    (probs,) = session.run(
        [backbone.manifest.probabilities_output],
        {backbone.manifest.input_name: backbone.to_input(crops)},
    )
    diff = float(np.abs(np.asarray(probs) - val_probs[idx]).max())
    same = bool((np.asarray(probs).argmax(1) == val_probs[idx].argmax(1)).all())
    if diff > 1e-3 or not same:
        raise TrainError(
            "train.failed",
            f"the exported graph disagrees with the trained head on validation images "
            f"(max |diff| {diff:.3g}, same top-1: {same})",
        )
    return {"images": len(idx), "max_abs_diff": diff}
