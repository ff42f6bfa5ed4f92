"""Evaluate a model directory on a labelled data set, and write a report a person can read.

Metrics are computed here in numpy, from the model's full probability vectors:
top-1 and top-5 accuracy, per-class precision / recall / F1 with their macro
and support-weighted averages, accuracy on the coarse classes where the model
and the data have them, the expected calibration error (ECE) of the top-1
confidence, and the confusion matrix. The report directory gets
``metrics.json``, ``per_class.csv``, ``per_class.md``, ``report.md``,
``confusion_matrix.png`` and ``per_class_f1.png``.

The data set's class names are matched to the model's labels; failing that, to
the model's categories (the probabilities of a category's labels are summed),
so the shipped ImageNet model can be scored on a data set labelled with
product categories. A class map file (``data_class,model_class`` lines) covers
the remaining cases.

Images go through the serving engine (:class:`inference.engine.Engine`), so the
numbers are those of the decode and preprocessing code the workers run;
images/s is measured the same way, end to end (decode + preprocess + model).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

__all__ = [
    "ClassMetrics",
    "EvaluationResult",
    "Throughput",
    "confusion_matrix",
    "evaluate_model",
    "expected_calibration_error",
    "measure_throughput",
    "per_class_markdown",
    "per_class_metrics",
    "per_class_rows",
    "render_markdown",
    "score",
    "topk_accuracy",
    "write_report",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- metrics
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def topk_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k most probable (ties: lower index)."""
    if len(y_true) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class precision, recall, F1 and support (0 where undefined), from a confusion matrix."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true count
    predicted: np.ndarray  # predicted count


def per_class_metrics(cm: np.ndarray) -> ClassMetrics:
    """Precision, recall and F1 of each class; a 0/0 ratio counts as 0."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return ClassMetrics(precision, recall, f1, support, predicted)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """ECE: support-weighted mean |accuracy - confidence| over equal-width confidence bins.

    Bins are (0, 1/n], (1/n, 2/n], ... (Guo et al., 2017).
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    if len(confidence) == 0:
        return float("nan")
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def score(
    probs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    *,
    coarse_of_class: Sequence[str] = (),
    n_bins: int = 15,
) -> dict[str, Any]:
    """All summary metrics of one set of predictions, as a JSON-able dict.

    Macro averages are over the classes present in ``y_true`` (support > 0):
    a class absent from the evaluation data has no recall to average.
    ``coarse_of_class`` (the coarse class of every model class) adds coarse
    accuracy two ways: the coarse class of the top fine prediction (what the
    worker reports as the category) and the argmax of summed probabilities.
    """
    y_true = np.asarray(y_true, np.int64)
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    pcm = per_class_metrics(cm)
    present = pcm.support > 0
    weights = pcm.support[present] / max(1, pcm.support.sum())
    confidence = probs.max(axis=1)
    correct = y_pred == y_true
    out: dict[str, Any] = {
        "n_images": len(y_true),
        "n_classes_model": n_classes,
        "n_classes_present": int(present.sum()),
        "top1_accuracy": float(correct.mean()) if len(y_true) else float("nan"),
        "top5_accuracy": topk_accuracy(probs, y_true, 5),
        "macro_precision": float(pcm.precision[present].mean()),
        "macro_recall": float(pcm.recall[present].mean()),
        "macro_f1": float(pcm.f1[present].mean()),
        "weighted_precision": float((pcm.precision[present] * weights).sum()),
        "weighted_recall": float((pcm.recall[present] * weights).sum()),
        "weighted_f1": float((pcm.f1[present] * weights).sum()),
        "ece": expected_calibration_error(confidence, correct, n_bins),
        "ece_bins": n_bins,
        "mean_confidence": float(confidence.mean()) if len(y_true) else float("nan"),
        "nll": float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean()),
    }
    if coarse_of_class:
        names = list(dict.fromkeys(coarse_of_class))
        index = {c: i for i, c in enumerate(names)}
        fine_to_coarse = np.array([index[c] for c in coarse_of_class], np.int64)
        coarse_true = fine_to_coarse[y_true]
        coarse_probs = np.zeros((len(y_true), len(names)))
        np.add.at(coarse_probs.T, fine_to_coarse, probs.T)
        out["n_coarse_classes_model"] = len(names)
        out["coarse_accuracy"] = float((fine_to_coarse[y_pred] == coarse_true).mean())
        out["coarse_accuracy_summed"] = float((coarse_probs.argmax(axis=1) == coarse_true).mean())
        out["coarse_top5_accuracy"] = topk_accuracy(coarse_probs, coarse_true, 5)
    return out


# --------------------------------------------------------------------------- running a model
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

    @property
    def per_class(self) -> ClassMetrics:
        """Per-class metrics over the evaluation classes."""
        cm = confusion_matrix(self.y_true, self.probs.argmax(axis=1), len(self.class_names))
        return per_class_metrics(cm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-image arrays)."""
        out: dict[str, Any] = _json_safe(
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
            }
        )
        return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def evaluate_model(
    model_dir: Path,
    data: Path,
    *,
    class_map: Path | None = None,
    providers: Sequence[str] = ("cpu",),
    intra_op_threads: int = 0,
    batch_size: int = 32,
    throughput_images: int = 256,
    throughput_baselines: Sequence[Path] = (),
    progress: bool = True,
) -> EvaluationResult:
    """Run the model in ``model_dir`` over the data set ``data`` and score it.

    ``throughput_baselines`` are other model directories (e.g. the shipped
    model) whose speed is measured in the same run, on the same images.
    """
    # Imported here so that the metric functions above need only numpy.
    from inference.decode import ImageLimits, decode_image  # noqa: PLC0415
    from inference.engine import Engine  # noqa: PLC0415
    from inference.errors import InferenceError  # noqa: PLC0415
    from inference.manifest import ModelManifest  # noqa: PLC0415
    from inference.train.dataset import load_dataset  # noqa: PLC0415

    manifest = ModelManifest.load(Path(model_dir))
    raw = json.loads((manifest.model_dir / "manifest.json").read_text(encoding="utf-8"))
    dataset = load_dataset(Path(data))
    mapping = _read_class_map(class_map) if class_map is not None else None
    level, target = _resolve_level(dataset.classes, manifest.labels, manifest.categories, mapping)

    if level == "labels":
        class_names: tuple[str, ...] = manifest.labels
        collapse: np.ndarray | None = None
    else:
        class_names = tuple(dict.fromkeys(manifest.categories))
        index = {c: i for i, c in enumerate(class_names)}
        collapse = np.zeros((len(manifest.labels), len(class_names)), np.float32)
        collapse[np.arange(len(manifest.labels)), [index[c] for c in manifest.categories]] = 1
    eval_index = {c: i for i, c in enumerate(class_names)}

    coarse_of_class: tuple[str, ...] = ()
    model_coarse = raw.get("coarse")
    if (
        level == "labels"
        and isinstance(model_coarse, list)
        and len(model_coarse) == len(class_names)
    ):
        coarse_of_class = tuple(str(c) for c in model_coarse)

    engine = Engine(
        manifest,
        providers=providers,
        intra_op_threads=intra_op_threads,
        top_k=5,
        max_batch_size=batch_size,
    )
    limits = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000)
    probs_rows: list[np.ndarray] = []
    y_rows: list[int] = []
    failed: list[tuple[str, str]] = []
    samples = dataset.samples
    bar = tqdm(
        total=len(samples), desc=f"evaluating {manifest.name}", unit="img", disable=not progress
    )
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pixels, labels = [], []
        for sample in chunk:
            try:
                image = decode_image(
                    sample.path.read_bytes(), limits, min_side=manifest.resize_short_side
                )
            except (InferenceError, OSError) as exc:
                failed.append((str(sample.path), getattr(exc, "code", "image.unreadable")))
                continue
            pixels.append(image.pixels)
            labels.append(eval_index[target[dataset.classes[sample.label]]])
        if pixels:
            probs, _ = engine.infer(engine.preprocessor.batch(pixels))
            probs_rows.append(probs @ collapse if collapse is not None else probs)
            y_rows.extend(labels)
        bar.update(len(chunk))
    bar.close()
    if failed:
        logger.warning("%d image(s) could not be used and are left out", len(failed))
    if not y_rows:
        raise ValueError(f"no usable image in {data}")
    probs_all = np.concatenate(probs_rows).astype(np.float64)
    y_true = np.asarray(y_rows, np.int64)
    metrics = score(probs_all, y_true, class_names, coarse_of_class=coarse_of_class)
    metrics["failed_images"] = len(failed)

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
    )
    if throughput_images > 0:
        blobs = [s.path.read_bytes() for s in samples[: min(len(samples), throughput_images)]]
        engines = [engine] + [
            Engine(
                ModelManifest.load(Path(other)),
                providers=providers,
                intra_op_threads=intra_op_threads,
                top_k=5,
                max_batch_size=batch_size,
            )
            for other in throughput_baselines
        ]
        result.throughput = measure_throughput(engines, blobs, throughput_images, batch_size)
    return result


def measure_throughput(
    engines: Sequence[Any], blobs: Sequence[bytes], n_images: int, batch_size: int
) -> list[Throughput]:
    """Images per second through ``Engine.predict_bytes`` (the worker's call), per engine.

    Each engine is warmed up at the real batch size, then the engines take
    turns batch by batch on the same images, so that a machine shared with
    other work slows them alike and their ratio stays fair.
    """
    from inference.decode import ImageLimits  # noqa: PLC0415

    limits = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000)
    for engine in engines:
        engine.predict_bytes(list(blobs[:batch_size]), limits)
    stats = [{"wall": 0.0, "decode": 0.0, "pre": 0.0, "infer": 0.0} for _ in engines]
    done = 0
    while done < n_images:
        batch = [blobs[(done + i) % len(blobs)] for i in range(min(batch_size, n_images - done))]
        for engine, st in zip(engines, stats, strict=True):
            start = time.perf_counter()
            result = engine.predict_bytes(batch, limits)
            st["wall"] += time.perf_counter() - start
            st["decode"] += result.timings.decode_s
            st["pre"] += result.timings.preprocess_s
            st["infer"] += result.timings.inference_s
        done += len(batch)
    return [
        Throughput(
            model=f"{engine.model_name} {engine.model_version}",
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
    if m.get("failed_images"):
        lines.append(f"| images left out (unreadable) | {m['failed_images']} |")
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
    paths += [out_dir / "confusion_matrix.png", out_dir / "per_class_f1.png"]
    logger.info("wrote evaluation report to %s", out_dir)
    return paths
