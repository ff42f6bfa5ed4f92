"""Do reviewers' corrections make the next model better? An experiment on val.

The served model labels a validation set, which it never trained on. The set is
split in two halves, stratified by class. The model's errors on one half (A)
stand for what reviewers correct: those photos, with their true label, are
what ``vitrine corrections export`` would write for the next training run. A
head is refit on the served graph's own embeddings twice, with the same
settings and seed: on the training set alone (the baseline), and on the
training set plus the corrections (each repeated ``weight`` times). Both are
scored on the other half (B): on every photo, and on the photos of the classes
that were corrected, which is where corrections should help. The halves swap
roles. By default each class's photos are halved in file order (first half
against second), so that a shot taken right after another does not sit on the
other side of the split and flatter the result; ``split="random"`` draws a new
random split per repeat instead. The report gives every fold and the mean.
Half B never contributes a correction to the head it scores.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.serving.engine import Engine
from inference.serving.manifest import ModelManifest
from inference.serving.options import CPU_ONLY, EngineOptions
from inference.training.dataset import load_dataset
from inference.training.evaluate import _evaluation_classes, _resolve_level, predict_all
from inference.training.head import HeadConfig, train_head

__all__ = ["CorrectionFold", "evaluate_corrections", "halves", "render_markdown"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorrectionFold:
    """One fold: corrections from half A, scores on half B."""

    repeat: int
    half: int
    weight: int
    #: Photos of half A the served model got wrong (the corrections), and their classes.
    corrections: int
    corrected_classes: int
    #: Photos of half B: all, and those of the corrected classes.
    scored: int
    scored_in_corrected: int
    served_accuracy: float
    served_accuracy_corrected: float
    baseline_accuracy: float
    baseline_accuracy_corrected: float
    with_corrections_accuracy: float
    with_corrections_accuracy_corrected: float


def halves(y: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """A 0/1 half for each sample, evenly within each class.

    With ``rng``, a class's samples alternate in a random order. Without, the
    first half of each class in the data's order is half 0 and the rest half
    1: photos shot one after another (numbered files) stay on one side, so
    that a near-identical shot on the other side does not flatter the result.
    """
    half = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if rng is None:
            half[idx[(len(idx) + 1) // 2 :]] = 1
        else:
            half[rng.permutation(idx)[1::2]] = 1
    return half


def _accuracy(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    return float((pred[mask] == y[mask]).mean()) if mask.any() else float("nan")


def _embed(engine: Engine, data: Path, batch_size: int, progress: bool) -> tuple[Any, ...]:
    """Probabilities, labels (the model's label index) and embeddings of ``data``."""
    manifest = engine.manifest
    dataset = load_dataset(data)
    level, target = _resolve_level(dataset.classes, manifest.labels, manifest.categories, None)
    if level != "labels":
        raise ValueError(f"{data}: its classes are not the model's labels; corrections need them")
    class_names, collapse = _evaluation_classes(manifest, "labels")
    index = {c: i for i, c in enumerate(class_names)}
    labels_of = [index[target[c]] for c in dataset.classes]
    probs, y, _, failed, emb = predict_all(
        engine, dataset, labels_of, collapse, batch_size, progress=progress, with_embeddings=True
    )
    if emb is None:
        raise ValueError(f"{manifest.model_dir}: the graph has no embedding output")
    if failed:
        logger.warning("%s: %d image(s) left out", data, len(failed))
    return probs, y, emb


def evaluate_corrections(
    model_dir: Path,
    train: Path,
    val: Path,
    *,
    repeats: int = 5,
    weights: Sequence[int] = (1, 5),
    seed: int = 0,
    split: str = "contiguous",
    head: HeadConfig | None = None,
    options: EngineOptions = CPU_ONLY,
    progress: bool = True,
) -> list[CorrectionFold]:
    """Run the experiment: ``repeats`` x 2 halves x ``weights`` folds.

    ``split``: ``contiguous`` (each class's photos in file order, first half
    against second; the repeats differ by the head's seed only) or ``random``
    (a new random split each repeat).
    """
    if split not in ("contiguous", "random"):
        raise ValueError(f"split must be 'contiguous' or 'random', got {split!r}")
    engine = Engine.build(ModelManifest.load(model_dir), dataclasses.replace(options, top_k=5))
    batch_size = options.max_batch_size
    n_classes = len(engine.manifest.labels)
    _, y_train, x_train = _embed(engine, train, batch_size, progress)
    probs_val, y_val, x_val = _embed(engine, val, batch_size, progress)
    served = probs_val.argmax(axis=1)
    base_config = head or HeadConfig(kind="linear")
    empty_x, empty_y = np.zeros((0, x_train.shape[1]), np.float32), np.zeros(0, np.int64)
    folds: list[CorrectionFold] = []
    for repeat in range(repeats):
        config = dataclasses.replace(base_config, seed=seed + repeat)
        rng = np.random.default_rng(seed + repeat) if split == "random" else None
        side = halves(y_val, rng)
        # The baseline sees no val photo: one head per seed serves both halves.
        base, _ = train_head(x_train, y_train, empty_x, empty_y, n_classes, config,
                             progress=False)  # fmt: skip
        base_pred = base.logits(x_val).argmax(axis=1)
        for half in (0, 1):
            a, b = side == half, side != half
            wrong = a & (served != y_val)
            corrected = np.isin(y_val, np.unique(y_val[wrong])) & b
            for weight in weights:
                x_fit = np.concatenate([x_train, *[x_val[wrong]] * weight])
                y_fit = np.concatenate([y_train, *[y_val[wrong]] * weight])
                fixed, _ = train_head(x_fit, y_fit, empty_x, empty_y, n_classes, config,
                                      progress=False)  # fmt: skip
                pred = fixed.logits(x_val).argmax(axis=1)
                folds.append(
                    CorrectionFold(
                        repeat=repeat,
                        half=half,
                        weight=weight,
                        corrections=int(wrong.sum()),
                        corrected_classes=len(np.unique(y_val[wrong])),
                        scored=int(b.sum()),
                        scored_in_corrected=int(corrected.sum()),
                        served_accuracy=_accuracy(served, y_val, b),
                        served_accuracy_corrected=_accuracy(served, y_val, corrected),
                        baseline_accuracy=_accuracy(base_pred, y_val, b),
                        baseline_accuracy_corrected=_accuracy(base_pred, y_val, corrected),
                        with_corrections_accuracy=_accuracy(pred, y_val, b),
                        with_corrections_accuracy_corrected=_accuracy(pred, y_val, corrected),
                    )
                )
    return folds


_COLUMNS = (
    ("served_accuracy", "served"),
    ("baseline_accuracy", "head, train only"),
    ("with_corrections_accuracy", "head, train + corrections"),
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary(folds: Sequence[CorrectionFold]) -> list[dict[str, Any]]:
    """Mean and std over folds, per correction weight."""
    rows = []
    for weight in sorted({f.weight for f in folds}):
        mine = [asdict(f) for f in folds if f.weight == weight]
        row: dict[str, Any] = {"weight": weight, "folds": len(mine)}
        for key in ("corrections", "corrected_classes", "scored", "scored_in_corrected"):
            row[key] = float(np.mean([m[key] for m in mine]))
        for key, _ in _COLUMNS:
            for suffix in ("", "_corrected"):
                values = np.array([m[key + suffix] for m in mine], np.float64)
                row[key + suffix] = float(np.nanmean(values))
                row[key + suffix + "_std"] = float(np.nanstd(values))
        gain = [m["with_corrections_accuracy_corrected"] - m["baseline_accuracy_corrected"]
                for m in mine]  # fmt: skip
        row["gain_corrected"] = float(np.nanmean(gain))
        row["folds_improved"] = int(sum(g > 0 for g in gain))
        row["folds_worse"] = int(sum(g < 0 for g in gain))
        rows.append(row)
    return rows


def render_markdown(folds: Sequence[CorrectionFold], *, command: str) -> str:
    """The report: what was run, the mean per weight, and every fold."""
    rows = summary(folds)
    lines = [
        "# Corrections on val: do they raise accuracy where they were made?",
        "",
        f"Command: `{command}`",
        "",
        "Half A's errors of the served model are the corrections; half B is scored.",
        '"Corrected classes": the photos of B whose class received a correction in A.',
        "",
        "| weight | corrections | B photos (corrected classes) | on | "
        + " | ".join(name for _, name in _COLUMNS)
        + " |",
        "|---|---|---|---|" + "---|" * len(_COLUMNS),
    ]
    for row in rows:
        for suffix, where in (("_corrected", "corrected classes"), ("", "all of B")):
            cells = [
                f"{_pct(row[key + suffix])} ± {100 * row[key + suffix + '_std']:.1f}"
                for key, _ in _COLUMNS
            ]
            lines.append(
                f"| {row['weight']} | {row['corrections']:.1f} | {row['scored']:.0f} "
                f"({row['scored_in_corrected']:.1f}) | {where} | " + " | ".join(cells) + " |"
            )
    lines += ["", "Per correction weight, on the corrected classes of B:", ""]
    for row in rows:
        lines.append(
            f"- weight {row['weight']}: {100 * row['gain_corrected']:+.1f} points on average "
            f"over the head trained without corrections; better in {row['folds_improved']} of "
            f"{row['folds']} folds, worse in {row['folds_worse']}."
        )
    lines += [
        "",
        "## Every fold",
        "",
        "| repeat | half | weight | corrections | served (corr.) | train only (corr.) "
        "| + corrections (corr.) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in folds:
        lines.append(
            f"| {f.repeat} | {f.half} | {f.weight} | {f.corrections} "
            f"| {_pct(f.served_accuracy)} ({_pct(f.served_accuracy_corrected)}) "
            f"| {_pct(f.baseline_accuracy)} ({_pct(f.baseline_accuracy_corrected)}) "
            f"| {_pct(f.with_corrections_accuracy)} "
            f"({_pct(f.with_corrections_accuracy_corrected)}) |"
        )
    return "\n".join(lines) + "\n"
