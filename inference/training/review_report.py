"""``vitrine review-policy``: fit the review thresholds on the served graph and report them.

The model's outputs on each data set come from the engine the worker runs (INT8 on
CPUs where the model has it), through the same code as ``vitrine evaluate``, and are
cached by model, graph and data so a rerun computes them once. The thresholds are
fitted (:mod:`inference.training.review_policy`) on the data sets named to fit on,
measured by k-fold on every data set pooled and on the unseen ones alone, and
written as ``report.json``, ``report.md`` and ``trade_off.png``; optionally into the
manifest's ``review`` object. What was measured: docs/MODEL.md (review policy).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.serving.decode import LOCAL_FILE_LIMITS
from inference.serving.engine import REVIEW_FLAGS, Engine, Prediction
from inference.serving.manifest import MANIFEST_FILE, ModelManifest
from inference.serving.options import CPU_ONLY, EngineOptions
from inference.serving.review import ReviewThresholds
from inference.training.dataset import load_dataset
from inference.training.evaluate import predict_all
from inference.training.jsonsafe import json_safe
from inference.training.non_products import non_product_images
from inference.training.review_policy import (
    LEVELS,
    LabelledOutputs,
    NonProducts,
    Targets,
    fit_thresholds,
    kfold,
    labelled_outputs,
    policy_rates,
    trade_off_curve,
)

__all__ = [
    "BUDGETS",
    "model_outputs",
    "non_product_scores",
    "render_markdown",
    "review_policy",
    "write_manifest_thresholds",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Routing budgets of the k-fold trade-off curve.
BUDGETS = (0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50)


def _cache_key(engine: Engine, data: Path) -> str:
    """Model, graph and data: the outputs change with any of them."""
    data = Path(data)
    listing = (
        data.read_bytes()
        if data.is_file()
        else "\n".join(str(p) for p in sorted(data.rglob("*"))).encode()
    )
    int8 = engine.manifest.int8.sha256 if engine.manifest.int8 is not None else ""
    parts = [engine.manifest.sha256, int8, engine.precision, engine.provider, str(data.resolve())]
    return hashlib.sha256("|".join(parts).encode() + listing).hexdigest()[:16]


def model_outputs(
    engine: Engine, data: Path, *, batch_size: int, cache_dir: Path | None, progress: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64] | None]:
    """Label probabilities, label indices and OOD scores of every image of ``data``."""
    cache = cache_dir / f"outputs-{_cache_key(engine, data)}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            ood = saved["ood"] if saved["ood"].size else None
            logger.info("model outputs for %s from %s", data, cache)
            return saved["probs"], saved["y"], ood
    dataset = load_dataset(Path(data))
    index = {label: i for i, label in enumerate(engine.manifest.labels)}
    missing = [c for c in dataset.classes if c not in index]
    if missing:
        raise ValueError(f"{data}: classes that are no model label: {', '.join(missing[:10])}")
    probs, y, ood, failed, _ = predict_all(
        engine, dataset, [index[c] for c in dataset.classes], None, batch_size, progress=progress
    )
    if failed:
        logger.warning("%d image(s) of %s could not be used and are left out", len(failed), data)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, probs=probs, y=y, ood=ood if ood is not None else np.zeros(0))
    return probs, y, ood


def non_product_scores(engine: Engine, folder: Path | None) -> tuple[NonProducts, float]:
    """Top kind mass and OOD score of each non-product image, and the share the engine routes."""
    images = non_product_images(folder)
    items = engine.predict_bytes(list(images.values()), LOCAL_FILE_LIMITS).items
    predictions = [item for item in items if isinstance(item, Prediction)]
    routed = [bool(set(p.flags) & set(REVIEW_FLAGS)) for p in predictions]
    scores = NonProducts(
        kind=np.asarray([p.kind_score for p in predictions], np.float64),
        ood=np.asarray([1.0 if p.ood_score is None else p.ood_score for p in predictions]),
    )
    return scores, float(np.mean(routed)) if routed else float("nan")


def _concat(parts: Sequence[LabelledOutputs]) -> LabelledOutputs:
    return LabelledOutputs(
        product=np.concatenate([p.product for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        category=np.concatenate([p.category for p in parts]),
        ood=np.concatenate([p.ood for p in parts]),
        correct={level: np.concatenate([p.correct[level] for p in parts]) for level in LEVELS},
    )


def _kfold_curve(
    data: LabelledOutputs, targets: Targets, strata: npt.NDArray[np.int64], folds: int, seed: int
) -> list[dict[str, Any]]:
    """Held-out routed share and kept accuracy when the fit may route at most each budget."""
    rows = []
    for budget in BUDGETS:
        # An unreachable kind target makes each fit keep the kind level as right as it can.
        at = replace(targets, max_routed=budget, kind_accuracy=1.01)
        result = kfold(data, at, folds=folds, seed=seed, strata=strata)
        rows.append({"budget": budget, **result["summary"]})
    return rows


def _shipped_rates(
    engine: Engine, probs: npt.NDArray[Any], ood: Any, outputs: LabelledOutputs
) -> dict[str, Any]:
    """Routing, each flag's share and accuracy per level at the engine's own thresholds."""
    masks = engine.review_masks(probs, ood)
    routed = np.any([masks[f] for f in REVIEW_FLAGS], axis=0)
    return {
        "images": len(routed),
        "routed": float(routed.mean()),
        "flags": {name: float(mask.mean()) for name, mask in masks.items()},
        "accuracy_of_kept": {
            level: float(outputs.correct[level][~routed].mean()) for level in LEVELS
        },
        "accuracy": {level: float(outputs.correct[level].mean()) for level in LEVELS},
    }


def review_policy(
    model_dir: Path,
    data: Sequence[Path],
    *,
    fit_on: Sequence[Path] = (),
    unseen: Sequence[Path] = (),
    non_products: Path | None = None,
    targets: Targets | None = None,
    folds: int = 5,
    seed: int = 0,
    options: EngineOptions = CPU_ONLY,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the thresholds on ``fit_on`` (default: all ``data``) and measure; the report."""
    targets = targets or Targets()
    manifest = ModelManifest.load(Path(model_dir))
    engine = Engine.build(manifest, options)
    batch_size = options.max_batch_size
    kinds = manifest.coarse or manifest.labels
    sets: dict[str, LabelledOutputs] = {}
    strata: dict[str, npt.NDArray[np.int64]] = {}
    shipped: dict[str, Any] = {}
    for path in data:
        probs, y, ood = model_outputs(
            engine, path, batch_size=batch_size, cache_dir=cache_dir, progress=progress
        )
        scores = engine.review_scores(probs, ood)
        sets[str(path)] = labelled_outputs(scores, probs, y, kinds, manifest.categories)
        strata[str(path)] = y
        shipped[str(path)] = _shipped_rates(engine, probs, ood, sets[str(path)])
    np_scores, np_routed_shipped = non_product_scores(engine, non_products)
    fit_names = [str(p) for p in fit_on] or list(sets)
    unseen_names = [str(p) for p in unseen]
    fit = fit_thresholds(_concat([sets[n] for n in fit_names]), targets, non_products=np_scores)
    pooled = _concat(list(sets.values()))
    pooled_strata = np.concatenate(list(strata.values()))
    unseen_mask = np.concatenate([np.full(len(sets[n]), n in unseen_names) for n in sets])
    also_on = unseen_mask if unseen_names else None
    pooled_kfold = kfold(pooled, targets, folds=folds, seed=seed, non_products=np_scores,
                         strata=pooled_strata, also_on=also_on)  # fmt: skip
    validations: dict[str, Any] = {"pooled": {"data": list(sets), **pooled_kfold}}
    curves: dict[str, Any] = {}
    if unseen_names:
        only = _concat([sets[n] for n in unseen_names])
        only_strata = np.concatenate([strata[n] for n in unseen_names])
        only_kfold = kfold(only, targets, folds=folds, seed=seed, non_products=np_scores,
                           strata=only_strata)  # fmt: skip
        validations["unseen"] = {"data": unseen_names, **only_kfold}
        curves["kfold_unseen"] = _kfold_curve(only, targets, only_strata, folds, seed)
    for name, outputs in sets.items():
        curves[name] = trade_off_curve(outputs, fit.thresholds.ood_threshold)
    report: dict[str, Any] = json_safe(
        {
            "model": {"name": manifest.name, "version": manifest.version, "dir": str(model_dir)},
            "engine": {"provider": engine.provider, "precision": engine.precision},
            "targets": asdict(targets),
            "data": {name: len(outputs) for name, outputs in sets.items()},
            "fit_on": fit_names,
            "unseen": unseen_names,
            "shipped_thresholds": asdict(engine.review_thresholds),
            "shipped": shipped,
            "non_products": {
                "images": len(np_scores.kind),
                "source": str(non_products) if non_products else "synthetic (20)",
                "routed_by_shipped": np_routed_shipped,
            },
            "fit": fit.to_dict(),
            "fitted_on_each": {
                name: policy_rates(outputs, fit.thresholds, np_scores)
                for name, outputs in sets.items()
            },
            "kfold": validations,
            "curves": curves,
        }
    )
    return report


def write_manifest_thresholds(model_dir: Path, thresholds: ReviewThresholds, note: str) -> Path:
    """Put the fitted thresholds in the manifest's ``review`` object, the rest untouched.

    ``confidence_threshold`` (the older, product-level routing rule) is cleared: the
    kind threshold replaces it.
    """
    path = Path(model_dir) / MANIFEST_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["review"] = {
        "kind_threshold": thresholds.kind_threshold,
        "ood_threshold": thresholds.ood_threshold,
        "product_threshold": thresholds.product_threshold,
        "confidence_threshold": None,
        "fitted": note,
    }
    ModelManifest.from_dict(raw, model_dir=Path(model_dir))  # still a valid manifest
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _pm(stat: dict[str, float]) -> str:
    return f"{100 * stat['mean']:.1f}% ± {100 * stat['std']:.1f}"


def render_markdown(report: dict[str, Any], command: str) -> str:
    """The report a person reads: targets, shipped vs fitted, k-fold, the trade-off."""
    t, fit = report["targets"], report["fit"]
    th = fit["thresholds"]
    out = [
        f"# Review policy of {report['model']['name']} {report['model']['version']}",
        "",
        f"Written by `{command}`. Graph: {report['engine']['precision']} on "
        f"{report['engine']['provider']}. Targets: at most {_pct(t['max_routed'])} routed; "
        f"what is kept {_pct(t['kind_accuracy'])} right at the kind level and "
        f"{_pct(t['category_accuracy'])} at the category level; "
        f"{_pct(t['non_products_routed'])} of non-products routed. Routing rule: "
        "`uncertain_kind` (top kind's mass under kind_threshold) or `unknown_product` "
        "(OOD score under ood_threshold); `uncertain_product` informs and routes nothing.",
        "",
        "## Shipped thresholds before this fit",
        "",
        f"Thresholds: `{report['shipped_thresholds']}`.",
        "",
        "| data | images | routed | flags | kept right: product / kind / category |",
        "|---|---:|---:|---|---|",
    ]
    for name, s in report["shipped"].items():
        a = s["accuracy_of_kept"]
        flags = ", ".join(f"{flag} {_pct(share)}" for flag, share in s["flags"].items() if share)
        out.append(
            f"| {name} | {s['images']} | {_pct(s['routed'])} | {flags or 'none'} "
            f"| {_pct(a['product'])} / {_pct(a['kind'])} / {_pct(a['category'])} |"
        )
    npr = report["non_products"]
    out += [
        "",
        f"Non-products ({npr['images']}, {npr['source']}): "
        f"{_pct(npr['routed_by_shipped'])} routed.",
        "",
        f"## Fitted on {', '.join(report['fit_on'])}",
        "",
        f"kind_threshold **{th['kind_threshold']:.4f}**, "
        f"ood_threshold **{th['ood_threshold']:.4f}**, "
        f"product_threshold (informational) {th['product_threshold']:.4f}. "
        f"Meets the targets: **{'yes' if fit['meets_targets'] else 'no'}**"
        + (f" (missed: {'; '.join(fit['missed'])})" if fit["missed"] else "")
        + ".",
        "",
        "| data | routed | kept right: product / kind / category | non-products routed |",
        "|---|---:|---|---:|",
    ]
    for name, r in report["fitted_on_each"].items():
        a = r["accuracy_of_kept"]
        out.append(
            f"| {name} | {_pct(r['routed'])} | {_pct(a['product'])} / {_pct(a['kind'])} / "
            f"{_pct(a['category'])} | {_pct(r.get('non_products_routed'))} |"
        )
    return "\n".join(out + _kfold_lines(report))


def _kfold_lines(report: dict[str, Any]) -> list[str]:
    """The report's k-fold table and its trade-off curve, as Markdown lines."""
    out = ["", "## k-fold (fit on k-1 folds, measured on the held-out fold; mean ± std)", ""]
    out += [
        "| pool | folds | routed | kept right: product | kind | category | non-products routed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, v in report["kfold"].items():
        rows = [(f"{key}: {', '.join(v['data'])}", v["summary"])]
        if "held_out_subset" in v["summary"]:
            rows.append((f"{key}, measured on {', '.join(report['unseen'])} only",
                         v["summary"]["held_out_subset"]))  # fmt: skip
        for label, s in rows:
            a = s["accuracy_of_kept"]
            nps = s.get("non_products_routed")
            out.append(
                f"| {label} | {v['folds']} | {_pm(s['routed'])} | {_pm(a['product'])} | "
                f"{_pm(a['kind'])} | {_pm(a['category'])} | {_pm(nps) if nps else 'n/a'} |"
            )
    if "kfold_unseen" in report["curves"]:
        out += [
            "",
            "## Trade-off, k-fold on the unseen data: the most accurate kind level per budget",
            "",
            "| budget | routed | kept right: product | kind | category |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in report["curves"]["kfold_unseen"]:
            a = row["accuracy_of_kept"]
            out.append(
                f"| {_pct(row['budget'])} | {_pm(row['routed'])} | {_pm(a['product'])} | "
                f"{_pm(a['kind'])} | {_pm(a['category'])} |"
            )
    out += ["", "![trade-off](trade_off.png)", ""]
    return out


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t = report["targets"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for ax, level, target in (
        (axes[0], "kind", t["kind_accuracy"]),
        (axes[1], "category", t["category_accuracy"]),
    ):
        for name in report["unseen"] or list(report["data"]):
            curve = report["curves"][name]
            ax.plot([r["routed"] for r in curve], [r[level] for r in curve],
                    label=f"{Path(name).name}: sweep of kind_threshold")  # fmt: skip
        if "kfold_unseen" in report["curves"]:
            rows = report["curves"]["kfold_unseen"]
            ax.errorbar(
                [r["routed"]["mean"] for r in rows],
                [r["accuracy_of_kept"][level]["mean"] for r in rows],
                xerr=[r["routed"]["std"] for r in rows],
                yerr=[r["accuracy_of_kept"][level]["std"] for r in rows],
                fmt="o", capsize=3, label="k-fold, held out (mean ± std)",
            )  # fmt: skip
        ax.axhline(
            target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target:.1%}"
        )
        ax.axvline(
            t["max_routed"], color="grey", linestyle=":", linewidth=1, label="routing budget"
        )
        ax.set_xlabel("share routed to review")
        ax.set_ylabel(f"{level} accuracy of what is kept")
        ax.set_xlim(0, 0.6)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{report['model']['name']} {report['model']['version']}: review trade-off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    """Write report.json, report.md and trade_off.png into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (
        out_dir / n for n in ("report.json", "report.md", "trade_off.png")
    )
    json_path.write_text(
        json.dumps({"command": command, **report}, indent=2) + "\n", encoding="utf-8"
    )
    md_path.write_text(render_markdown(report, command), encoding="utf-8")
    _plot(report, png_path)
    return [json_path, md_path, png_path]
