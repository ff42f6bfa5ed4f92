"""``vitrine train --recipe full``: fine-tune the whole network, calibrate it, ship it.

Steps, each logged with its duration:

1. load the training and validation data and fingerprint them (as ``vitrine train``);
2. decode every image once into memory and fine-tune the whole backbone with a
   new classifier (:mod:`inference.training.full_finetune`), checkpointing each
   epoch so that an interrupted run resumes;
3. fit the softmax temperature on validation (calibrated confidence), take the
   class centroids of the training images' embeddings (the OOD score), and pick
   the two review thresholds on validation: the lowest confidence whose
   accepted images are ``target_accuracy`` right, and the OOD score below which
   only ``ood_known_rejection`` of known images fall;
4. optionally, the open-set protocol: train again (half the epochs) with
   ``open_set_classes`` classes left out and measure how well their validation
   images are told from the known classes' (AUROC of each score);
5. export the serving graph, check ONNX Runtime against torch, score it on
   validation with ONNX Runtime, and write the model directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from inference.serving.manifest import IMAGENET_MODEL, ModelManifest, default_model_dir
from inference.training.dataset import Dataset
from inference.training.full_finetune import (
    FullFinetuneConfig,
    finetune_full,
    load_images,
    serving_crops,
)
from inference.training.head import fit_temperature, softmax
from inference.training.jsonsafe import json_safe
from inference.training.metrics import auroc, score, selective_threshold
from inference.training.package import write_model_dir
from inference.training.torch_export import (
    embeddings_and_logits,
    export_finetuned,
    verify_export,
)
from inference.training.trainer import (
    TrainConfig,
    TrainData,
    TrainResult,
    load_data,
    read_categories,
    versions,
)

__all__ = ["FullRecipe", "open_set_classes", "train_full"]

logger = logging.getLogger(__name__)

#: The served graph's input side (the fine-tune may train smaller: FixRes).
SERVE_SIZE = 224


@dataclass(frozen=True)
class FullRecipe:
    """What the full recipe adds to :class:`TrainConfig`."""

    finetune: FullFinetuneConfig = field(default_factory=FullFinetuneConfig)
    checkpoint_dir: Path | None = None  # default: <out>/.checkpoint
    ood_kind: str = "centroid"
    target_accuracy: float = 0.97
    ood_known_rejection: float = 0.05
    open_set_classes: int = 0


@dataclass
class _Trained:
    net: Any
    history: list[dict[str, float]]
    seconds: float  # fine-tuning across every resumed run
    this_run_seconds: float  # fine-tuning in this run
    bf16: bool  # whether bfloat16 autocast ran (native on this CPU)
    val_emb: np.ndarray
    val_logits: np.ndarray
    centroids: np.ndarray


def _centroids(emb: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)
    out = np.zeros((n_classes, emb.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        if (labels == c).any():
            mean = unit[labels == c].mean(axis=0)
            out[c] = mean / max(float(np.linalg.norm(mean)), 1e-6)
    return out


def _ood_scores(kind: str, emb: np.ndarray, logits: np.ndarray, t: float, cents: np.ndarray) -> Any:
    if kind == "energy":
        z = logits / t
        peak = z.max(axis=1)
        return t * (peak + np.log(np.exp(z - peak[:, None]).sum(axis=1)))
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)
    return (unit @ cents.T).max(axis=1)


def _fit(
    train_set: Dataset,
    val_set: Dataset,
    recipe: FullRecipe,
    checkpoint_dir: Path,
    progress: bool,
) -> _Trained:
    """Fine-tune on ``train_set``; embeddings and logits of validation, training centroids."""
    cfg = recipe.finetune
    train_images = load_images([s.path for s in train_set.samples], progress=progress)
    val_crops = serving_crops(
        load_images([s.path for s in val_set.samples], progress=progress), SERVE_SIZE
    )
    n_classes = len(train_set.classes)
    result = finetune_full(
        train_images, train_set.labels, val_crops, val_set.labels, n_classes, cfg,
        checkpoint_dir=checkpoint_dir, progress=progress, kinds=_kind_ids(train_set),
    )  # fmt: skip
    train_emb, _ = embeddings_and_logits(result.network, serving_crops(train_images, SERVE_SIZE))
    val_emb, val_logits = embeddings_and_logits(result.network, val_crops)
    return _Trained(
        net=result.network,
        history=result.history,
        seconds=result.seconds,
        this_run_seconds=result.this_run_seconds,
        bf16=result.bf16,
        val_emb=val_emb,
        val_logits=val_logits,
        centroids=_centroids(train_emb, train_set.labels, n_classes),
    )


def _kind_ids(data: Dataset) -> np.ndarray | None:
    """The kind id of each class (the data's coarse classes), or None without them."""
    if not data.coarse:
        return None
    names = sorted(set(data.coarse))
    return np.array([names.index(c) for c in data.coarse], dtype=np.int64)


def open_set_classes(classes: tuple[str, ...], k: int, seed: int) -> list[int]:
    """The ``k`` class ids the open-set run leaves out (sorted; the same for a seed)."""
    rng = np.random.default_rng([seed, 81])
    return sorted(int(c) for c in rng.choice(len(classes), size=k, replace=False))


def _open_set(
    data: TrainData,
    recipe: FullRecipe,
    ckpt: Path,
    progress: bool,
    categories_of: list[str],
    name: str,
) -> dict[str, Any]:
    """Train without ``open_set_classes`` classes; AUROC of flagging their val images."""
    left_out = set(open_set_classes(data.train.classes, recipe.open_set_classes, 0))
    keep = [c for c in range(len(data.train.classes)) if c not in left_out]
    remap = {old: new for new, old in enumerate(keep)}
    known_classes = tuple(data.train.classes[c] for c in keep)
    known_coarse = tuple(data.train.coarse[c] for c in keep) if data.train.coarse else ()

    def known(ds: Dataset) -> Dataset:
        samples = [replace(s, label=remap[s.label]) for s in ds.samples if s.label in remap]
        return Dataset(ds.root, known_classes, tuple(samples), coarse=known_coarse)

    val_unknown = np.array([s.label in left_out for s in data.val.samples])
    # Validation = the known classes' images and the left-out ones, in one pass.
    val_all = Dataset(root=data.val.root, classes=known_classes, samples=tuple(
        replace(s, label=remap.get(s.label, 0)) for s in data.val.samples))  # fmt: skip
    # Half the epochs: the run measures the OOD score, not the best accuracy (and
    # keeps the whole recipe inside its CPU budget).
    short = replace(
        recipe, finetune=replace(recipe.finetune, epochs=max(4, recipe.finetune.epochs // 2))
    )
    trained = _fit(known(data.train), val_all, short, ckpt / "open-set", progress)
    t = fit_temperature(trained.val_logits[~val_unknown], val_all.labels[~val_unknown])
    out: dict[str, Any] = {
        "left_out": sorted(data.train.classes[c] for c in left_out),
        "val_images_known": int((~val_unknown).sum()),
        "val_images_unknown": int(val_unknown.sum()),
        "epochs": short.finetune.epochs,
    }
    confidence = softmax(trained.val_logits / t).max(axis=1)
    out["auroc_confidence"] = auroc(confidence[~val_unknown], confidence[val_unknown])
    for kind in ("centroid", "energy"):
        s = _ood_scores(kind, trained.val_emb, trained.val_logits, t, trained.centroids)
        out[f"auroc_{kind}"] = auroc(s[~val_unknown], s[val_unknown])
    out["seconds"] = round(trained.seconds, 1)
    # The model measured, written beside its checkpoint for inspection (and for the
    # test that its flag fires on a left-out class): thresholds from known images.
    known_samples = [s for s, u in zip(val_all.samples, val_unknown, strict=True) if not u]
    known_val = Dataset(root=data.val.root, classes=known_classes, samples=tuple(known_samples))
    known_trained = replace(trained, val_emb=trained.val_emb[~val_unknown],
                            val_logits=trained.val_logits[~val_unknown])  # fmt: skip
    review = _thresholds(recipe, known_trained, known_val.labels, t)
    categories = [categories_of[c] for c in keep]
    model_dir = ckpt / "open-set" / "model"
    _export(known_trained, t, recipe, model_dir / "export.onnx", known_val)
    _write(
        model_dir, model_dir / "export.onnx", known(data.train), categories, review,
        name=f"{name}-open-set", data_hash=data.data_hash,
        training=json_safe({"command": "vitrine train --recipe full --open-set-classes",
                             "seed": recipe.finetune.seed, "open_set": out, "review": review}),
        description=f"{len(keep)} products; {len(left_out)} left out: {', '.join(out['left_out'])}",
    )  # fmt: skip
    (model_dir / "export.onnx").unlink()
    out["model_dir"] = str(model_dir)
    return out


def _thresholds(recipe: FullRecipe, trained: _Trained, y: np.ndarray, t: float) -> dict[str, float]:
    probs = softmax(trained.val_logits / t)
    correct = probs.argmax(axis=1) == y
    ood = _ood_scores(recipe.ood_kind, trained.val_emb, trained.val_logits, t, trained.centroids)
    return {
        "temperature": t,
        "confidence_threshold": selective_threshold(
            probs.max(axis=1), correct, recipe.target_accuracy
        ),
        "ood_threshold": float(np.quantile(ood, recipe.ood_known_rejection)),
    }


def _onnx_probs(path: Path, crops: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [session.run(["probabilities"], {"image": crops[i : i + 64]})[0]
             for i in range(0, len(crops), 64)]  # fmt: skip
    return np.concatenate(parts)


def train_full(
    config: TrainConfig, recipe: FullRecipe, *, on_step: Callable[[str], None] | None = None
) -> TrainResult:
    """Run the full recipe on ``config.data`` and write the model to ``config.out``."""
    say = on_step or (lambda _msg: None)
    started, timings = time.perf_counter(), {}
    out = Path(config.out)
    ckpt = recipe.checkpoint_dir or out / ".checkpoint"
    data = load_data(config)
    train_set, val_set = data.train, data.val
    say(f"data: {len(train_set)} training / {len(val_set)} validation images, "
        f"{len(train_set.classes)} classes")  # fmt: skip
    trained = _fit(train_set, val_set, recipe, ckpt, config.progress)
    timings["finetune"] = round(trained.seconds, 1)
    t = fit_temperature(trained.val_logits, val_set.labels)
    review = _thresholds(recipe, trained, val_set.labels, t)
    say(f"calibration: T={t:.3f}, review thresholds {review}")
    categories = list(
        read_categories(config.categories_file, train_set.classes)
        if config.categories_file is not None
        else list(train_set.coarse or train_set.classes)
    )
    name = config.name or out.resolve().name
    open_set = None
    if recipe.open_set_classes:
        open_set = _open_set(data, recipe, ckpt, config.progress, list(categories), name)
        say(f"open set: {open_set}")
    onnx_path = ckpt / "model.onnx"
    diffs, probs = _export(trained, t, recipe, onnx_path, val_set)
    val_metrics = score(probs, val_set.labels, train_set.classes, coarse_of_class=train_set.coarse)
    training = json_safe({
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "vitrine train --recipe full",
        "seed": recipe.finetune.seed,
        "data": {"train": str(config.data), "val": data.val_how, "data_hash": data.data_hash,
                 "split_sizes": {"train": len(train_set), "val": len(val_set)},
                 "n_classes": len(train_set.classes)},
        "recipe": {**asdict(recipe.finetune), "train_size": recipe.finetune.size,
                   "serve_size": SERVE_SIZE, "ood_kind": recipe.ood_kind,
                   "bf16_autocast_used": trained.bf16},
        "history": trained.history,
        "review": review,
        "open_set": open_set,
        "val_metrics": val_metrics,
        "export_check": {"onnx_vs_torch_max_abs_diff": diffs},
        # Fine-tuning summed over every run that resumed the checkpoint; the total adds
        # this run's other steps (loading, calibration, open set, export).
        "timings_s": {**timings, "total": round(
            time.perf_counter() - started - trained.this_run_seconds + trained.seconds, 1)},
        "versions": versions(),
    })  # fmt: skip
    manifest = _write(
        out, onnx_path, train_set, categories, review, name=name,
        data_hash=data.data_hash, training=training,
        description=(f"{len(train_set.classes)} products fine-tuned from {recipe.finetune.arch} "
                     "(full network), calibrated, with an OOD score"),
    )  # fmt: skip
    say(f"wrote {out} ({manifest.name} {manifest.version})")
    return TrainResult(out, manifest, training["val_metrics"], training)


def _export(
    trained: _Trained, t: float, recipe: FullRecipe, onnx_path: Path, val_set: Dataset
) -> tuple[Any, np.ndarray]:
    """Export the serving graph; its agreement with torch, and its val probabilities."""
    val_crops = serving_crops(
        load_images([s.path for s in val_set.samples], progress=False), SERVE_SIZE
    )
    module = export_finetuned(trained.net, onnx_path, size=SERVE_SIZE, temperature=t,
                              centroids=trained.centroids, ood_kind=recipe.ood_kind)  # fmt: skip
    diffs = verify_export(module, onnx_path, val_crops[:16])
    return diffs, _onnx_probs(onnx_path, val_crops)


def _write(
    out: Path,
    onnx_path: Path,
    train_set: Dataset,
    categories: list[str],
    review: dict[str, float],
    *,
    name: str,
    data_hash: str,
    training: dict[str, Any],
    description: str,
) -> ModelManifest:
    base = ModelManifest.load(default_model_dir(IMAGENET_MODEL))
    return write_model_dir(
        out,
        onnx.load(str(onnx_path)),
        base=base.replace(ood_output="ood_score", **_review_fields(review)),
        name=name,
        labels=train_set.classes,
        categories=categories,
        coarse=train_set.coarse,
        data_hash=data_hash,
        training=training,
        description=description,
    )


def _review_fields(review: dict[str, float]) -> dict[str, float]:
    return {
        "confidence_threshold": review["confidence_threshold"],
        "ood_threshold": review["ood_threshold"],
    }
