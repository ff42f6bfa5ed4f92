"""One command rebuilds everything the worker serves from a model folder.

``vitrine build-model`` (and ``make train-grocery``) runs, in order:

1. ``train``: the classifier (frozen-feature heads, or the full recipe), FP32 graph;
2. ``quantize``: the INT8 graph the worker serves on CPUs, kept only within
   ``max_top1_drop`` of FP32 on val;
3. ``search``: the compact search descriptor (projection fitted on train, scored on
   val as queries against train), so ``/similar`` answers;
4. ``review``: the review thresholds, fitted on the outputs of the served graph;
5. ``evaluate``: the served graph scored on val (the full report);
6. ``card``: the model card, from what the steps measured.

Each step records what it measured and how long it took in the manifest's
``build`` object, with the SHA-256 of the FP32 graph it ran on. A rerun skips the
steps already done for the same graph (and training already done with the same
options), so a build interrupted anywhere resumes where it stopped; the full
recipe's own checkpoints resume training mid-way. ``build.total_s`` adds up every
step's time across runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference.serving.engine import Engine
from inference.serving.manifest import MANIFEST_FILE, ModelManifest
from inference.serving.options import CPU_ONLY, EngineOptions
from inference.serving.review import ReviewThresholds
from inference.training.dataset import load_dataset
from inference.training.jsonsafe import json_safe
from inference.training.model_card import render_card, write_card
from inference.training.quantize import QuantizeConfig, quantize_model
from inference.training.review_policy import Targets
from inference.training.review_report import review_policy, write_manifest_thresholds
from inference.training.review_report import write_report as write_review_report
from inference.training.search_eval import evaluate_search, fit_search_projection
from inference.training.trainer import TrainResult

__all__ = ["STEPS", "BuildPlan", "BuildReport", "build_model"]

logger = logging.getLogger(__name__)

STEPS = ("train", "quantize", "search", "review", "evaluate", "card")


@dataclass(frozen=True)
class BuildPlan:
    """What to build, from which data, and how."""

    train: Path  # the training data (folder or list file)
    val: Path  # validation data: INT8 check, search queries, review fit, evaluation
    out: Path  # the model folder the worker will serve
    #: Runs the training step and returns its result (a closure over the recipe);
    #: None: no training, the folder's graph as it is (everything else is rebuilt).
    trainer: Callable[[], TrainResult] | None
    #: The training options, as a string: a change retrains.
    train_key: str = ""
    options: EngineOptions = CPU_ONLY  # how every engine of the build is built
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    search_dims: int = 128
    targets: Targets = field(default_factory=Targets)
    folds: int = 5
    throughput_images: int = 256  # images timed by the evaluation (0: not timed)
    non_products: Path | None = None  # None: the 20 synthetic ones
    reports: Path | None = None  # default: <out>/reports
    card: Path | None = None  # default: <out>/MODEL_CARD.md
    cache_dir: Path | None = None  # model outputs, cached between steps and runs
    command: str = "vitrine build-model"
    force: bool = False  # every step, even those already done
    progress: bool = True

    @property
    def reports_dir(self) -> Path:
        """Where the steps' full reports go."""
        return self.reports or self.out / "reports"

    @property
    def card_path(self) -> Path:
        """Where the model card goes."""
        return self.card or self.out / "MODEL_CARD.md"


@dataclass
class BuildReport:
    """The steps run and skipped in this run, and the manifest's build record."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def _read_record(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_FILE
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    record = raw.get("build")
    return record if isinstance(record, dict) else {}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    """Set the manifest's ``build`` object, keeping every other key as written."""
    path = out / MANIFEST_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    steps = record.get("steps", {})
    record["total_s"] = round(sum(float(s.get("seconds", 0.0)) for s in steps.values()), 1)
    raw["build"] = json_safe(record)
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _done(record: dict[str, Any], step: str, sha256: str, key: str | None = None) -> bool:
    entry = record.get("steps", {}).get(step)
    if not isinstance(entry, dict) or entry.get("model_sha256") != sha256:
        return False
    return key is None or entry.get("key") == key


def build_model(plan: BuildPlan, *, on_step: Callable[[str], None] | None = None) -> BuildReport:
    """Run every step of ``plan`` not already done; the report of this run."""
    say = on_step or (lambda _msg: None)
    report = BuildReport()
    record = {} if plan.force else _read_record(plan.out)
    record.setdefault("steps", {})
    record["command"] = plan.command
    manifest_file = plan.out / MANIFEST_FILE
    if plan.trainer is None and not manifest_file.is_file():
        raise ValueError(f"no model to rebuild from: {manifest_file} does not exist")
    trained = manifest_file.is_file() and _done(
        record, "train", ModelManifest.load(plan.out).sha256, plan.train_key
    )
    if trained or plan.trainer is None:
        report.skipped.append("train")
    else:
        record = {"command": plan.command, "steps": {}}  # a new graph: every step again
        _run(plan, record, report, "train", lambda: _train(plan), say)
    sha = ModelManifest.load(plan.out).sha256
    for step, run in (
        ("quantize", lambda: _quantize(plan)),
        ("search", lambda: _search(plan)),
        ("review", lambda: _review(plan)),
        ("evaluate", lambda: _evaluate(plan)),
    ):
        if _done(record, step, sha) and not plan.force:
            report.skipped.append(step)
            continue
        _run(plan, record, report, step, run, say)
    _run(plan, record, report, "card", lambda: _card(plan, record), say)
    report.record = _read_record(plan.out)
    return report


def _run(
    plan: BuildPlan,
    record: dict[str, Any],
    report: BuildReport,
    step: str,
    run: Callable[[], dict[str, Any]],
    say: Callable[[str], None],
) -> None:
    say(f"build-model: {step}")
    started = time.perf_counter()
    result = run()
    seconds = result.pop("seconds", None) or time.perf_counter() - started
    record["steps"][step] = {
        **result,
        "model_sha256": ModelManifest.load(plan.out).sha256,
        "seconds": round(float(seconds), 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if step == "train":
        record["steps"][step]["key"] = plan.train_key
    _write_record(plan.out, record)
    report.ran.append(step)
    say(f"build-model: {step} done in {seconds:.0f} s")


def _train(plan: BuildPlan) -> dict[str, Any]:
    assert plan.trainer is not None
    result = plan.trainer()
    m = result.val_metrics
    timings = result.training.get("timings_s") or {}
    return {
        # Training time across every run that resumed its checkpoint (full recipe).
        "seconds": timings.get("total"),
        "val_top1": m.get("top1_accuracy"),
        "val_kinds": m.get("coarse_accuracy"),
        "recipe": result.training.get("command", "vitrine train"),
    }


def _quantize(plan: BuildPlan) -> dict[str, Any]:
    train, val = load_dataset(plan.train), load_dataset(plan.val)
    q = quantize_model(plan.out, train, val, plan.quantize, plan.options)
    return {
        "kept": q.kept,
        "top1_fp32": q.top1_fp32,
        "top1_int8": q.top1_int8,
        "agreement": q.agreement,
        "speedup": q.speedup,
        "max_top1_drop": plan.quantize.max_top1_drop,
    }


def _served(plan: BuildPlan) -> Engine:
    """The engine the worker would serve from the folder (INT8 on CPUs where kept)."""
    return Engine.build(ModelManifest.load(plan.out), plan.options)


def _search(plan: BuildPlan) -> dict[str, Any]:
    cache = plan.cache_dir / "search" if plan.cache_dir else None
    with _served(plan) as engine:
        fit_search_projection(engine, plan.train, dims=plan.search_dims, cache_dir=cache,
                              progress=plan.progress)  # fmt: skip
    with _served(plan) as engine:  # again, to read the projection just written
        scores = evaluate_search(engine, plan.train, plan.val, cache_dir=cache,
                                 progress=plan.progress)  # fmt: skip
    served = scores[-1]
    return {
        "dims": plan.search_dims,
        "index": f"{served.descriptor} {served.index}",
        "precision_at_1": served.precision_at_1,
        "recall_at_10": served.recall_at_10,
    }


def _review(plan: BuildPlan) -> dict[str, Any]:
    # The thresholds are fitted with none overridden: the manifest's are what is fitted.
    options = replace(plan.options, thresholds=ReviewThresholds())
    cache = plan.cache_dir / "review" if plan.cache_dir else None
    data = _unique([plan.train, plan.val])
    report = review_policy(plan.out, data, fit_on=[plan.val], unseen=[plan.val],
                           non_products=plan.non_products, targets=plan.targets,
                           folds=plan.folds, options=options, cache_dir=cache,
                           progress=plan.progress)  # fmt: skip
    fit = report["fit"]
    write_manifest_thresholds(
        plan.out, ReviewThresholds(**fit["thresholds"]),
        f"{plan.command} ({report['engine']['precision']}, on {plan.val})",
    )  # fmt: skip
    write_review_report(report, plan.reports_dir / "review-policy", plan.command)
    unseen = report["kfold"].get("unseen", {})
    return {
        "precision": report["engine"]["precision"],
        "thresholds": fit["thresholds"],
        "meets_targets": fit["meets_targets"],
        "routed": fit["routed"],
        "accuracy_of_kept": fit["accuracy_of_kept"],
        "non_products_routed": fit["non_products_routed"],
        "kfold_val": {"folds": unseen.get("folds"), **(unseen.get("summary") or {})},
    }


def _unique(paths: Sequence[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def _evaluate(plan: BuildPlan) -> dict[str, Any]:
    from inference.training.evaluate import evaluate_model, write_report  # noqa: PLC0415

    with Engine.build(ModelManifest.load(plan.out), plan.options, warmup=False) as engine:
        precision = engine.precision
    result = evaluate_model(
        plan.out, plan.val, options=plan.options, throughput_images=plan.throughput_images,
        progress=plan.progress, non_products=plan.non_products or "synthetic",
    )  # fmt: skip
    write_report(result, plan.reports_dir / "evaluation")
    m = result.metrics
    review = m.get("review", {})
    return {
        "data": str(plan.val),
        "precision": precision,
        "images": m["n_images"],
        "top1": m["top1_accuracy"],
        "top5": m["top5_accuracy"],
        "kinds": m.get("coarse_accuracy"),
        "macro_f1": m["macro_f1"],
        "ece": m["ece"],
        "routed": review.get("routed"),
        "accuracy_of_kept": review.get("accuracy_of_kept"),
        "non_products_routed": (review.get("non_products") or {}).get("routed"),
        "images_per_s": result.throughput[0].images_per_s if result.throughput else None,
    }


def _card(plan: BuildPlan, record: dict[str, Any]) -> dict[str, Any]:
    manifest = ModelManifest.load(plan.out)
    raw = json.loads((plan.out / MANIFEST_FILE).read_text(encoding="utf-8"))
    text = render_card(manifest, raw, record, reports=plan.reports_dir, card=plan.card_path)
    write_card(plan.card_path, text)
    return {"path": str(plan.card_path), "sha256": hashlib.sha256(text.encode()).hexdigest()}
