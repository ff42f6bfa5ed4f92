"""Fitting the review thresholds, on synthetic per-level scores with known answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from inference.serving.engine import Engine
from inference.serving.manifest import ModelManifest, default_model_dir
from inference.serving.options import EngineOptions
from inference.serving.review import ReviewThresholds, group_matrix, level_scores
from inference.training.evaluate import review_rates
from inference.training.review_policy import (
    LabelledOutputs,
    NonProducts,
    Targets,
    fit_thresholds,
    kfold,
    labelled_outputs,
    policy_rates,
    trade_off_curve,
)
from inference.training.review_report import (
    BUDGETS,
    review_policy,
    write_manifest_thresholds,
    write_report,
)

ONE_THREAD = EngineOptions(providers=("cpu",), intra_op_threads=1)


def _synthetic(n: int = 1000, seed: int = 0) -> LabelledOutputs:
    """Kind mass uniform on [0, 1]; the kind is right exactly when the mass is >= 0.3."""
    rng = np.random.default_rng(seed)
    kind = rng.uniform(0, 1, n)
    right = kind >= 0.3
    return LabelledOutputs(
        product=kind * 0.9,
        kind=kind,
        category=np.minimum(kind + 0.2, 1),
        ood=rng.uniform(0.5, 1, n),
        correct={
            "product": right & (kind >= 0.5),
            "kind": right,
            "category": right | (kind >= 0.1),
        },
    )


def test_labelled_outputs_mark_each_level_right_or_wrong() -> None:
    probs = np.array([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])
    kinds, categories = ("Apple", "Apple", "Pear"), ("produce",) * 3
    scores = level_scores(probs, group_matrix(kinds)[1], group_matrix(categories)[1])
    out = labelled_outputs(scores, probs, np.array([1, 0]), kinds, categories)
    assert out.correct["product"].tolist() == [False, False]
    assert out.correct["kind"].tolist() == [True, False]
    assert out.correct["category"].tolist() == [True, True]
    np.testing.assert_allclose(out.kind, [0.9, 0.6])


def test_the_fit_routes_the_least_that_meets_the_targets() -> None:
    data = _synthetic()
    fit = fit_thresholds(data, Targets(max_routed=0.5, kind_accuracy=1.0, category_accuracy=1.0))
    assert fit.meets_targets, fit.missed
    assert fit.thresholds.kind_threshold is not None
    # The least threshold that keeps only right kinds: the smallest mass >= 0.3.
    assert fit.thresholds.kind_threshold == data.kind[data.kind >= 0.3].min()
    assert fit.accuracy_of_kept["kind"] == 1.0
    np.testing.assert_allclose(fit.routed, (data.kind < 0.3).mean())
    # No photo is unfamiliar, so the OOD rule routes none of them.
    assert fit.thresholds.ood_threshold == data.ood.min()


def test_out_of_budget_it_keeps_the_kind_level_as_right_as_the_budget_allows() -> None:
    data = _synthetic()
    fit = fit_thresholds(data, Targets(max_routed=0.1, kind_accuracy=1.0))
    assert not fit.meets_targets
    assert fit.routed <= 0.1
    assert fit.routed > 0.09  # all the budget, spent on the least sure photos
    assert any("kind accuracy" in m for m in fit.missed)


def test_non_products_push_the_ood_threshold_up() -> None:
    data = _synthetic()
    strange = NonProducts(kind=np.full(10, 0.99), ood=np.linspace(0.1, 0.55, 10))
    fit = fit_thresholds(data, Targets(max_routed=0.5, kind_accuracy=1.0), non_products=strange)
    assert fit.non_products_routed is not None
    assert fit.non_products_routed >= 0.9
    rates = policy_rates(data, fit.thresholds, strange)
    assert rates["non_products_routed"] == fit.non_products_routed


def test_policy_rates_measure_routing_and_kept_accuracy() -> None:
    data = _synthetic()
    rates = policy_rates(data, ReviewThresholds(kind_threshold=0.3, ood_threshold=0.0))
    np.testing.assert_allclose(rates["routed"], (data.kind < 0.3).mean())
    assert rates["accuracy_of_kept"]["kind"] == 1.0
    assert rates["accuracy_of_kept"]["category"] == 1.0


def test_kfold_measures_on_held_out_folds() -> None:
    data = _synthetic(500)
    strata = np.arange(500) % 5
    result = kfold(data, Targets(max_routed=0.5, kind_accuracy=1.0), folds=5, strata=strata,
                   also_on=np.arange(500) < 100)  # fmt: skip
    assert [f["fold"] for f in result["per_fold"]] == list(range(5))
    assert sum(f["images"] for f in result["per_fold"]) == 500
    summary = result["summary"]
    assert 0.25 < summary["routed"]["mean"] < 0.35
    assert summary["accuracy_of_kept"]["kind"]["mean"] > 0.99
    assert summary["held_out_subset"]["routed"]["mean"] > 0


def test_trade_off_curve_routes_more_as_the_threshold_rises() -> None:
    curve = trade_off_curve(_synthetic(), ood_threshold=None, points=11)
    routed = [row["routed"] for row in curve]
    assert routed == sorted(routed)
    assert routed[0] == 0.0
    assert curve[-2]["kind"] == 1.0


# ------------------------------------------------------------------ evaluate and the manifest


def test_review_rates_are_the_engines_rule_at_every_level() -> None:
    manifest = ModelManifest.load(default_model_dir())
    engine = Engine(manifest, providers=("cpu",), intra_op_threads=1, warmup=False,
                    kind_threshold=0.6, ood_threshold=0.5, product_threshold=0.9)  # fmt: skip
    labels = manifest.labels
    granny, golden = labels.index("Granny-Smith"), labels.index("Golden-Delicious")
    milk = manifest.categories.index("dairy")
    probs = np.zeros((4, len(labels)))
    probs[0, [granny, golden]] = 0.55, 0.45  # sure it is an apple; the wrong apple
    probs[1, [granny, milk]] = 0.5, 0.5  # apple or milk: uncertain_kind
    probs[2, granny] = 1.0  # but unfamiliar: unknown_product
    probs[3, [granny, golden]] = 0.95, 0.05
    y = np.array([golden, granny, granny, granny])
    ood = np.array([0.9, 0.9, 0.1, 0.9])
    rates = review_rates(engine, probs, y, ood, collapsed=False)
    assert rates["routed"] == 0.5
    assert rates["flags"] == {
        "uncertain_kind": 0.25,
        "unknown_product": 0.25,
        "low_confidence": 0.0,
        "uncertain_product": 0.5,
    }
    assert rates["accuracy_of_kept"] == {"product": 0.5, "kind": 1.0, "category": 1.0}
    assert rates["thresholds"]["kind_threshold"] == 0.6


def test_fitted_thresholds_go_into_the_manifest_and_load_back(tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(default_model_dir(), target)
    fitted = ReviewThresholds(kind_threshold=0.7, ood_threshold=0.4, product_threshold=0.9)
    write_manifest_thresholds(target, fitted, "a test")
    loaded = ModelManifest.load(target)
    assert (loaded.kind_threshold, loaded.ood_threshold, loaded.product_threshold) == (
        0.7,
        0.4,
        0.9,
    )
    assert loaded.confidence_threshold is None
    assert loaded.coarse == ModelManifest.load(default_model_dir()).coarse
    assert json.loads((target / "manifest.json").read_text())["review"]["fitted"] == "a test"


def test_the_command_fits_measures_and_writes_its_report(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    report = review_policy(default_model_dir(), [tiny_dataset], unseen=[tiny_dataset], folds=2,
                           options=ONE_THREAD, cache_dir=cache, progress=False)  # fmt: skip
    assert report["engine"]["precision"] == "int8"  # the graph the worker serves on CPUs
    assert report["data"] == {str(tiny_dataset): 24}
    assert report["non_products"]["images"] == 20
    fitted = report["fit"]["thresholds"]
    assert fitted["kind_threshold"] is not None
    assert report["kfold"]["unseen"]["folds"] == 2
    assert [row["budget"] for row in report["curves"]["kfold_unseen"]] == list(BUDGETS)
    assert len(list(cache.glob("outputs-*.npz"))) == 1  # computed once, then read back
    again = review_policy(default_model_dir(), [tiny_dataset], folds=2, options=ONE_THREAD,
                          cache_dir=cache, progress=False)  # fmt: skip
    assert again["fit"] == report["fit"]
    paths = write_report(report, tmp_path / "out", "vitrine review-policy ...")
    assert {p.name for p in paths} == {"report.json", "report.md", "trade_off.png"}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "kind_threshold" in text
    assert "k-fold" in text
