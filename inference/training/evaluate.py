"""Evaluate a model directory on a labelled data set, and write a report a person can read.

The report directory gets the metrics of :mod:`inference.training.metrics` (top-1
and top-5, per-class precision / recall / F1, coarse accuracy, calibration error,
accuracy at coverage, review flags, the open-set AUROC) as JSON, CSV, Markdown and
charts. The data set's classes are matched to the model's labels or categories, or
through a class map. Images go through the serving engine
(:class:`inference.serving.engine.Engine`), so the figures, images/s included, are
those of the code the workers run. What the report holds: docs/TRAINING.md.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from inference.serving.decode import LOCAL_FILE_LIMITS, decode_image
from inference.serving.engine import INFORMATIONAL_FLAGS, REVIEW_FLAGS, Engine, Prediction
from inference.serving.errors import InferenceError
from inference.serving.manifest import ModelManifest
from inference.serving.options import CPU_ONLY, EngineOptions
from inference.training.dataset import Dataset, load_dataset
from inference.training.jsonsafe import json_safe
from inference.training.metrics import (
    ClassMetrics,
    accuracy_at_coverage,
    confusion_matrix,
    per_class_metrics,
    risk_coverage,
    score,
)
from inference.training.non_products import non_product_images
from inference.training.review_policy import LEVELS, labelled_outputs

__all__ = [
    "EvaluationResult",
    "Throughput",
    "evaluate_model",
    "measure_throughput",
    "non_product_review",
    "per_class_markdown",
    "per_class_rows",
    "predict_all",
    "render_markdown",
    "review_rates",
    "write_report",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throughput:
    """End-to-end speed of the serving engine on this machine, on the evaluation images."""

    model: str
    images: int
    batch_size: int
    provider: str
    device: str
    images_per_s: float  # decode + preprocess + inference
    model_images_per_s: float  # inference alone
    decode_s: float
    preprocess_s: float
    inference_s: float


@dataclass
class EvaluationResult:
    """Predictions of one model on one data set, and everything computed from them."""

    model_name: str
    model_version: str
    model_dir: str
    data: str
    level: str  # "labels" | "categories"
    class_names: tuple[str, ...]  # the evaluation's classes (model labels or categories)
    y_true: np.ndarray
    probs: np.ndarray
    metrics: dict[str, Any]
    coarse_of_class: tuple[str, ...] = ()
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error code)
    throughput: list[Throughput] = field(default_factory=list)
    ood: np.ndarray | None = None  # the graph's OOD score per image, where it has one
    #: Open-set protocol measured when the model was trained (manifest), if it was.
    open_set: dict[str, Any] | None = None

    @property
    def per_class(self) -> ClassMetrics:
        """Per-class metrics over the evaluation classes."""
        cm = confusion_matrix(self.y_true, self.probs.argmax(axis=1), len(self.class_names))
        return per_class_metrics(cm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-image arrays)."""
        out: dict[str, Any] = json_safe(
            {
                "model": {
                    "name": self.model_name,
                    "version": self.model_version,
                    "dir": self.model_dir,
                },
                "data": self.data,
                "level": self.level,
                "metrics": self.metrics,
                "failed_images": [{"path": p, "code": c} for p, c in self.failed],
                "throughput": [asdict(t) for t in self.throughput],
                "open_set": self.open_set,
            }
        )
        return out


def _read_class_map(path: Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].strip() and not row[0].startswith("#"):
                mapping[row[0].strip()] = row[1].strip()
    return mapping


def _resolve_level(
    data_classes: Sequence[str],
    labels: Sequence[str],
    categories: Sequence[str],
    class_map: dict[str, str] | None,
) -> tuple[str, dict[str, str]]:
    """Decide whether data classes name model labels or categories; map each data class."""
    target = {c: (class_map or {}).get(c, c) for c in data_classes}
    if class_map is not None:
        unmapped = [c for c in data_classes if c not in class_map]
        if unmapped:
            raise ValueError(
                f"class map has no line for {len(unmapped)} data class(es): "
                + ", ".join(unmapped[:10])
            )
    label_set, category_set = set(labels), set(categories)
    if all(t in label_set for t in target.values()):
        return "labels", target
    if all(t in category_set for t in target.values()):
        return "categories", target
    unknown = sorted({t for t in target.values() if t not in label_set})
    raise ValueError(
        f"{len(unknown)} data class(es) are neither model labels nor model categories: "
        f"{', '.join(unknown[:10])}; pass a class map (data_class,model_label_or_category lines)"
    )


def _evaluation_classes(
    manifest: ModelManifest, level: str
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The classes scored, and the label-to-category matrix when scoring categories."""
    if level == "labels":
        return manifest.labels, None
    class_names = tuple(dict.fromkeys(manifest.categories))
    index = {c: i for i, c in enumerate(class_names)}
    collapse = np.zeros((len(manifest.labels), len(class_names)), np.float32)
    collapse[np.arange(len(manifest.labels)), [index[c] for c in manifest.categories]] = 1
    return class_names, collapse


def predict_all(
    engine: Engine,
    dataset: Dataset,
    labels_of: Sequence[int],
    collapse: np.ndarray | None,
    batch_size: int,
    *,
    progress: bool,
    with_embeddings: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[tuple[str, str]], np.ndarray | None]:
    """Probabilities, evaluation labels and OOD scores of every usable image.

    (path, code) of the others, and the embeddings when asked for (and the graph has them).
    """
    probs_rows: list[np.ndarray] = []
    ood_rows: list[np.ndarray] = []
    embedding_rows: list[np.ndarray] = []
    y_rows: list[int] = []
    failed: list[tuple[str, str]] = []
    samples = dataset.samples
    min_side = engine.manifest.resize_short_side
    bar = tqdm(
        total=len(samples), desc=f"evaluating {engine.model_name}", unit="img", disable=not progress
    )
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pixels, labels = [], []
        for sample in chunk:
            try:
                image = decode_image(sample.path.read_bytes(), LOCAL_FILE_LIMITS, min_side=min_side)
            except (InferenceError, OSError) as exc:
                failed.append((str(sample.path), getattr(exc, "code", "image.unreadable")))
                continue
            pixels.append(image.pixels)
            labels.append(labels_of[sample.label])
        if pixels:
            outputs = engine.infer_outputs(
                engine.preprocessor.batch(pixels), with_embedding=with_embeddings
            )
            probs = outputs.probabilities
            probs_rows.append(probs @ collapse if collapse is not None else probs)
            if outputs.ood is not None:
                ood_rows.append(outputs.ood)
            if with_embeddings and outputs.embedding is not None:
                embedding_rows.append(outputs.embedding)
            y_rows.extend(labels)
        bar.update(len(chunk))
    bar.close()
    if not probs_rows:
        return np.zeros((0, 0)), np.zeros(0, np.int64), None, failed, None
    probs_all = np.concatenate(probs_rows).astype(np.float64)
    ood = np.concatenate(ood_rows).astype(np.float64) if ood_rows else None
    embeddings = np.concatenate(embedding_rows) if embedding_rows else None
    return probs_all, np.asarray(y_rows, np.int64), ood, failed, embeddings


def _model_coarse(raw: dict[str, Any], level: str, n_classes: int) -> tuple[str, ...]:
    """The model's coarse class of each label, when scoring its own labels."""
    coarse = raw.get("coarse")
    if level == "labels" and isinstance(coarse, list) and len(coarse) == n_classes:
        return tuple(str(c) for c in coarse)
    return ()


def evaluate_model(
    model_dir: Path,
    data: Path,
    *,
    class_map: Path | None = None,
    options: EngineOptions = CPU_ONLY,
    throughput_images: int = 256,
    throughput_baselines: Sequence[Path] = (),
    progress: bool = True,
    non_products: Path | Literal["synthetic"] | None = None,
) -> EvaluationResult:
    """Run the model in ``model_dir`` over the data set ``data`` and score it.

    ``options``: how the engine is built, as the worker builds it (its graph,
    threads, batch size and review thresholds; top-5 is always kept).
    ``throughput_baselines`` are other model directories (e.g. the shipped
    model) whose speed is measured in the same run, on the same images.
    ``non_products``: a folder of images that are no product, or ``"synthetic"``
    for the generated ones, whose routed share is reported (None: not measured).
    """
    manifest = ModelManifest.load(Path(model_dir))
    raw = json.loads((manifest.model_dir / "manifest.json").read_text(encoding="utf-8"))
    dataset = load_dataset(Path(data))
    mapping = _read_class_map(class_map) if class_map is not None else None
    level, target = _resolve_level(dataset.classes, manifest.labels, manifest.categories, mapping)

    class_names, collapse = _evaluation_classes(manifest, level)
    eval_index = {c: i for i, c in enumerate(class_names)}
    coarse_of_class = _model_coarse(raw, level, len(class_names))

    options = replace(options, top_k=5)
    batch_size = options.max_batch_size

    def engine_for(m: ModelManifest) -> Engine:
        return Engine.build(m, options)

    engine = engine_for(manifest)
    labels_of = [eval_index[target[c]] for c in dataset.classes]
    probs_all, y_true, ood, failed, _ = predict_all(
        engine, dataset, labels_of, collapse, batch_size, progress=progress
    )
    if failed:
        logger.warning("%d image(s) could not be used and are left out", len(failed))
    if not len(y_true):
        raise ValueError(f"no usable image in {data}")
    metrics = score(probs_all, y_true, class_names, coarse_of_class=coarse_of_class)
    metrics["failed_images"] = len(failed)
    metrics["review"] = review_rates(engine, probs_all, y_true, ood, collapse is not None)
    if non_products is not None:
        folder = None if non_products == "synthetic" else Path(non_products)
        metrics["review"]["non_products"] = non_product_review(engine, folder)

    result = EvaluationResult(
        model_name=manifest.name,
        model_version=manifest.version,
        model_dir=str(manifest.model_dir),
        data=str(data),
        level=level,
        class_names=class_names,
        y_true=y_true,
        probs=probs_all,
        metrics=metrics,
        coarse_of_class=coarse_of_class,
        failed=failed,
        ood=ood,
        open_set=(raw.get("training") or {}).get("open_set"),
    )
    if throughput_images > 0:
        blobs = [s.path.read_bytes() for s in dataset.samples[:throughput_images]]
        engines = [engine] + [
            engine_for(ModelManifest.load(Path(other))) for other in throughput_baselines
        ]
        result.throughput = measure_throughput(engines, blobs, throughput_images, batch_size)
    return result


def review_rates(
    engine: Engine,
    probs: np.ndarray,
    y_true: np.ndarray,
    ood: np.ndarray | None,
    collapsed: bool,
) -> dict[str, Any]:
    """What the engine's own review rule routes, per flag, and how right the rest is per level.

    The routed share, each flag's share (informational ones too) and the accuracy of
    what is not routed at the product, kind and category levels.
    """
    out: dict[str, Any] = {"thresholds": asdict(engine.review_thresholds)}
    if collapsed or not len(y_true):
        return out  # thresholds apply to label probabilities, not summed categories
    masks = engine.review_masks(probs, ood)
    routed = np.any([masks[flag] for flag in REVIEW_FLAGS], axis=0)
    kept = ~routed
    manifest = engine.manifest
    outputs = labelled_outputs(
        engine.review_scores(probs, ood),
        probs,
        y_true,
        manifest.coarse or manifest.labels,
        manifest.categories,
    )
    out |= {
        "routed": float(routed.mean()),
        "coverage": float(kept.mean()),
        "flags": {name: float(mask.mean()) for name, mask in masks.items()},
        "accuracy": {level: float(outputs.correct[level].mean()) for level in LEVELS},
        "accuracy_of_kept": {
            level: float(outputs.correct[level][kept].mean()) if kept.any() else float("nan")
            for level in LEVELS
        },
    }
    return out


def non_product_review(engine: Engine, folder: Path | None) -> dict[str, Any]:
    """The share of non-product images (``folder``, or synthetic ones) the engine routes."""
    images = non_product_images(folder)
    items = engine.predict_bytes(list(images.values()), LOCAL_FILE_LIMITS).items
    flags = [item.flags for item in items if isinstance(item, Prediction)]
    routed = [bool(set(f) & set(REVIEW_FLAGS)) for f in flags]
    return {
        "source": str(folder) if folder is not None else f"synthetic ({len(images)})",
        "images": len(flags),
        "routed": float(np.mean(routed)) if routed else float("nan"),
        "flags": {
            name: float(np.mean([name in f for f in flags])) if flags else float("nan")
            for name in (*REVIEW_FLAGS, *INFORMATIONAL_FLAGS)
        },
    }


def measure_throughput(
    engines: Sequence[Any], blobs: Sequence[bytes], n_images: int, batch_size: int
) -> list[Throughput]:
    """Images per second through ``Engine.predict_bytes`` (the worker's call), per engine.

    Each engine is warmed up at the real batch size, then the engines take
    turns batch by batch on the same images, so that a machine shared with
    other work slows them alike and their ratio stays fair.
    """
    for engine in engines:
        engine.predict_bytes(list(blobs[:batch_size]), LOCAL_FILE_LIMITS)
    stats = [{"wall": 0.0, "decode": 0.0, "pre": 0.0, "infer": 0.0} for _ in engines]
    done = 0
    while done < n_images:
        batch = [blobs[(done + i) % len(blobs)] for i in range(min(batch_size, n_images - done))]
        for engine, st in zip(engines, stats, strict=True):
            start = time.perf_counter()
            result = engine.predict_bytes(batch, LOCAL_FILE_LIMITS)
            st["wall"] += time.perf_counter() - start
            st["decode"] += result.timings.decode_s
            st["pre"] += result.timings.preprocess_s
            st["infer"] += result.timings.inference_s
        done += len(batch)
    return [
        Throughput(
            model=f"{engine.model_name} {engine.model_version} ({engine.precision})",
            images=done,
            batch_size=batch_size,
            provider=engine.provider,
            device=engine.device,
            images_per_s=done / st["wall"],
            model_images_per_s=done / st["infer"] if st["infer"] > 0 else float("nan"),
            decode_s=st["decode"],
            preprocess_s=st["pre"],
            inference_s=st["infer"],
        )
        for engine, st in zip(engines, stats, strict=True)
    ]


# --------------------------------------------------------------------------- report
def _fmt(value: Any, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.4f}"


def per_class_rows(result: EvaluationResult) -> list[dict[str, Any]]:
    """One row per class present in the data or predicted at least once, worst F1 first."""
    pcm = result.per_class
    rows = []
    for i, name in enumerate(result.class_names):
        if pcm.support[i] == 0 and pcm.predicted[i] == 0:
            continue
        rows.append(
            {
                "class": name,
                "coarse": result.coarse_of_class[i] if result.coarse_of_class else "",
                "support": int(pcm.support[i]),
                "predicted": int(pcm.predicted[i]),
                "precision": float(pcm.precision[i]),
                "recall": float(pcm.recall[i]),
                "f1": float(pcm.f1[i]),
            }
        )
    rows.sort(key=lambda r: (r["support"] == 0, r["f1"], r["class"]))
    return rows


def _summary_lines(result: EvaluationResult) -> list[str]:
    m = result.metrics
    lines = [
        f"| images | {m['n_images']} ({m['n_classes_present']} classes present, "
        f"{m['n_classes_model']} in the model's {result.level}) |",
        f"| top-1 accuracy | {_fmt(m['top1_accuracy'])} |",
        f"| top-5 accuracy | {_fmt(m['top5_accuracy'])} |",
        f"| macro precision / recall / F1 | {_fmt(m['macro_precision'])} / "
        f"{_fmt(m['macro_recall'])} / {_fmt(m['macro_f1'])} |",
        f"| weighted precision / recall / F1 | {_fmt(m['weighted_precision'])} / "
        f"{_fmt(m['weighted_recall'])} / {_fmt(m['weighted_f1'])} |",
    ]
    if "coarse_accuracy" in m:
        lines.append(
            f"| coarse accuracy ({m['n_coarse_classes_model']} classes): top fine label / "
            f"summed probabilities | {_fmt(m['coarse_accuracy'])} / "
            f"{_fmt(m['coarse_accuracy_summed'])} |"
        )
    lines.append(
        f"| expected calibration error ({m['ece_bins']} bins) | {_fmt(m['ece'], pct=False)} "
        f"(mean confidence {_fmt(m['mean_confidence'])}) |"
    )
    lines.append(
        f"| accuracy at 80% / 90% coverage (most confident images) | "
        f"{_fmt(m.get('accuracy_at_80_coverage'))} / {_fmt(m.get('accuracy_at_90_coverage'))} |"
    )
    lines += _review_lines(result)
    if m.get("failed_images"):
        lines.append(f"| images left out (unreadable) | {m['failed_images']} |")
    return lines


def _review_lines(result: EvaluationResult) -> list[str]:
    review, lines = result.metrics.get("review") or {}, []
    if "routed" in review:
        t = {k: v for k, v in review["thresholds"].items() if v is not None}
        named = ", ".join(f"{k} {v:.4g}" for k, v in t.items()) or "no thresholds"
        flags = ", ".join(f"{name} {_fmt(share)}" for name, share in review["flags"].items())
        kept = review["accuracy_of_kept"]
        lines += [
            f"| routed to review ({named}) | {_fmt(review['routed'])} (flags: {flags}) |",
            f"| accuracy of what is not routed: product / kind / category | "
            f"{_fmt(kept['product'])} / {_fmt(kept['kind'])} / {_fmt(kept['category'])} |",
        ]
    if "non_products" in review:
        npr = review["non_products"]
        lines.append(
            f"| non-products routed ({npr['images']}, {npr['source']}) | {_fmt(npr['routed'])} |"
        )
    o = result.open_set
    if o:
        lines.append(
            f"| open set (trained without {len(o['left_out'])} classes): AUROC of flagging "
            f"them, centroid / energy / confidence | {_fmt(o.get('auroc_centroid'), False)} / "
            f"{_fmt(o.get('auroc_energy'), False)} / {_fmt(o.get('auroc_confidence'), False)} |"
        )
    return lines


def render_markdown(result: EvaluationResult, rows: Sequence[dict[str, Any]]) -> str:
    """The human-readable report: summary, speed, the per-class table."""
    out = [
        f"# Evaluation of {result.model_name} {result.model_version}",
        "",
        f"Data: `{result.data}`, scored on the model's {result.level}.",
        "",
        "| metric | value |",
        "|---|---|",
        *_summary_lines(result),
        "",
    ]
    if result.throughput:
        out += [
            "## Speed on this machine (engine, decode + preprocess + model)",
            "",
            "| model | provider | batch | images/s end to end | images/s model only |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {t.model} | {t.provider} | {t.batch_size} | {t.images_per_s:.1f} | "
            f"{t.model_images_per_s:.1f} |"
            for t in result.throughput
        ]
        out += ["", f"Device: {result.throughput[0].device}.", ""]
    out += [
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![per-class F1](per_class_f1.png)",
        "",
        "## Per class (worst F1 first)",
        "",
        per_class_markdown(rows),
    ]
    return "\n".join(out) + "\n"


def per_class_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The per-class table as Markdown."""
    with_coarse = any(r["coarse"] for r in rows)
    head = "| class |" + (" coarse |" if with_coarse else "")
    head += " support | predicted | precision | recall | F1 |"
    sep = "|---|" + ("---|" if with_coarse else "") + "---:|---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        cells = [r["class"], *([r["coarse"]] if with_coarse else [])]
        cells += [str(r["support"]), str(r["predicted"])]
        cells += [f"{r[k]:.3f}" for k in ("precision", "recall", "f1")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_confusion(result: EvaluationResult, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    y_pred = result.probs.argmax(axis=1)
    shown = np.union1d(np.unique(result.y_true), np.unique(y_pred))
    cm = confusion_matrix(result.y_true, y_pred, len(result.class_names))[np.ix_(shown, shown)]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    names = [result.class_names[i] for i in shown]
    n = len(names)
    side = min(30.0, max(6.0, 0.22 * n + 3))
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fontsize = max(4.0, min(10.0, 500 / max(n, 1)))
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                        color=colour,
                    )
    acc = result.metrics["top1_accuracy"]
    ax.set_title(
        f"{result.model_name} {result.model_version}: confusion matrix\n"
        f"row-normalised; top-1 {_fmt(acc)} on {len(result.y_true)} images",
        fontsize=11,
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_f1(result: EvaluationResult, rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    present = sorted((r for r in rows if r["support"] > 0), key=lambda r: (r["f1"], r["class"]))
    n = len(present)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.18 * n + 1.5)), dpi=100)
    f1 = [r["f1"] for r in present]
    colours = ["#d62728" if v < 0.5 else "#ff7f0e" if v < 0.8 else "#2ca02c" for v in f1]
    ax.barh(range(n), f1, color=colours)
    ax.set_yticks(
        range(n),
        [f"{r['class']} (n={r['support']})" for r in present],
        fontsize=max(4.0, min(9.0, 450 / max(n, 1))),
    )
    ax.set_xlim(0, 1)
    macro = result.metrics["macro_f1"]
    ax.axvline(macro, color="black", linestyle="--", linewidth=1, label=f"macro F1 {macro:.3f}")
    ax.set_xlabel("F1")
    ax.set_title(
        f"{result.model_name} {result.model_version}: F1 per class (worst at the bottom)",
        fontsize=11,
    )
    ax.legend(loc="lower right")
    ax.margins(y=0.005)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_risk_coverage(result: EvaluationResult, path: Path) -> None:
    """Accuracy of the images kept against the share kept, most confident first."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    confidence = result.probs.max(axis=1)
    correct = result.probs.argmax(axis=1) == result.y_true
    coverage, accuracy = risk_coverage(confidence, correct)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.plot(coverage, accuracy, color="tab:blue", label="top-1 accuracy of the images kept")
    for c in (0.8, 0.9):
        a = accuracy_at_coverage(confidence, correct, c)
        ax.plot([c], [a], "o", color="tab:red")
        ax.annotate(f"{a:.1%} at {c:.0%}", (c, a), textcoords="offset points", xytext=(-60, -14))
    ax.set_xlabel("coverage (share of images kept, most confident first)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(max(0.0, float(accuracy.min()) - 0.05), 1.005)
    ax.grid(alpha=0.3)
    ax.set_title(f"{result.model_name} {result.model_version}: risk-coverage", fontsize=11)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """Write metrics.json, per_class.csv/.md, report.md and the two charts; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = per_class_rows(result)
    paths = []
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths.append(metrics_path)
    csv_path = out_dir / "per_class.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, ["class", "coarse", "support", "predicted", "precision", "recall", "f1"]
        )
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    paths.append(csv_path)
    md_path = out_dir / "per_class.md"
    md_path.write_text(per_class_markdown(rows) + "\n", encoding="utf-8")
    paths.append(md_path)
    report_path = out_dir / "report.md"
    report_path.write_text(render_markdown(result, rows), encoding="utf-8")
    paths.append(report_path)
    _plot_confusion(result, out_dir / "confusion_matrix.png")
    _plot_f1(result, rows, out_dir / "per_class_f1.png")
    _plot_risk_coverage(result, out_dir / "risk_coverage.png")
    paths += [
        out_dir / n for n in ("confusion_matrix.png", "per_class_f1.png", "risk_coverage.png")
    ]
    logger.info("wrote evaluation report to %s", out_dir)
    return paths
