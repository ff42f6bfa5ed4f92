"""``vitrine build-model``: everything the worker serves, rebuilt by one command.

A thin command over :func:`inference.training.build.build_model`: it turns the
options into a training closure and a build plan, takes the engine options from
the worker's settings (:func:`streams.worker.model.engine_options`), prints each
step and the card's path, and turns errors into exit codes: 0 success, 2 bad
input, 1 anything else. Rerun after an interruption: done steps are skipped.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from streams.tools.model_options import (
    categories_option,
    checkpoint_dir_option,
    kind_weight_option,
    max_top1_drop_option,
    name_option,
    non_products_option,
    open_set_classes_option,
    quiet_option,
    recipe_option,
)

__all__ = ["build_model_click", "build_model_command"]

logger = logging.getLogger(__name__)


def _trainer(
    train: Path, val: Path, out: Path, recipe: str, train_options: dict[str, Any], progress: bool
) -> Any:
    """The training step: a closure over a ``TrainConfig`` (and the full recipe's options)."""
    from inference.training.trainer import TrainConfig  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.tools.train import _full_recipe  # noqa: PLC0415

    settings = get_settings()
    opts = dict(train_options)
    full = opts.pop("full", {})
    config = TrainConfig(
        data=train,
        out=out,
        val_data=val,
        progress=progress,
        cache_dir=settings.state_dir / "features",
        intra_op_threads=settings.model.intra_op_threads,
        **opts,
    )
    if recipe == "full":
        full_recipe = _full_recipe(config.seed, **full)  # checks PyTorch is there

        def run_full() -> Any:
            from inference.training.full_recipe import train_full  # noqa: PLC0415

            return train_full(config, full_recipe, on_step=lambda m: click.echo(m, err=True))

        return run_full

    def run_frozen() -> Any:
        from inference.training.trainer import train as train_frozen  # noqa: PLC0415

        return train_frozen(config, on_step=lambda m: click.echo(m, err=True))

    return run_frozen


def build_model_command(
    train: Path,
    val: Path,
    out: Path,
    *,
    recipe: str = "frozen",
    train_options: dict[str, Any] | None = None,
    build_options: dict[str, Any] | None = None,
    progress: bool = True,
    retrain: bool = True,
    command: str | None = None,
) -> int:
    """Build ``out`` from ``train`` and ``val``; return the exit code.

    ``train_options``: ``TrainConfig`` fields (``name``, ``seed``, ``head``, ...), and
    ``full`` for the full recipe's; ``build_options``: ``BuildPlan`` fields.
    ``retrain`` False: the folder's graph as it is, everything else rebuilt.
    """
    from inference.serving.errors import InferenceError  # noqa: PLC0415
    from inference.training.build import BuildPlan, build_model  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import engine_options  # noqa: PLC0415

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train_options = train_options or {}
    key = json.dumps(
        {"recipe": recipe, "train": str(train), "val": str(val), **train_options},
        sort_keys=True,
        default=str,
    )
    settings = get_settings()
    try:
        trainer = (
            _trainer(Path(train), Path(val), Path(out), recipe, train_options, progress)
            if retrain
            else None
        )
        plan = BuildPlan(
            train=Path(train),
            val=Path(val),
            out=Path(out),
            trainer=trainer,
            train_key=key,
            options=engine_options(settings),
            cache_dir=settings.state_dir / "build",
            command=command or "vitrine build-model " + shlex.join([str(train), "--out", str(out)]),
            progress=progress,
            **(build_options or {}),
        )
        report = build_model(plan, on_step=lambda m: click.echo(m, err=True))
    except (InferenceError, ValueError, OSError) as exc:
        click.echo(f"vitrine build-model: {exc}", err=True)
        return 2
    steps = report.record.get("steps", {})
    click.echo(
        f"built {out}: ran {', '.join(report.ran)}"
        + (f"; already done: {', '.join(report.skipped)}" if report.skipped else "")
    )
    evaluation = steps.get("evaluate", {})
    click.echo(
        f"val ({evaluation.get('precision')}): top-1 {evaluation.get('top1', 0):.4f}, "
        f"kinds {evaluation.get('kinds') or 0:.4f}, routed {evaluation.get('routed') or 0:.4f}; "
        f"total {report.record.get('total_s', 0):.0f} s across runs"
    )
    click.echo(f"model card: {plan.card_path}")
    click.echo(f"serve it with: VITRINE_MODEL_PATH={out} vitrine worker")
    return 0


@click.command("build-model")
@click.argument("train", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--val",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="Validation data: INT8 check, search queries, review fit, evaluation.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Model folder.")
@recipe_option
@name_option
@categories_option
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="Head epochs (frozen) or epochs (full).")
@checkpoint_dir_option
@open_set_classes_option
@kind_weight_option
@non_products_option
@click.option(
    "--reports",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the full reports (default: OUT/reports).",
)
@click.option(
    "--card",
    type=click.Path(path_type=Path),
    default=None,
    help="Model card file (default: OUT/MODEL_CARD.md); a file with "
    "model-card markers keeps its prose around them.",
)
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2))
@max_top1_drop_option
@click.option(
    "--search-dims",
    default=128,
    show_default=True,
    type=click.IntRange(8, 1024),
    help="Dimensions of the search descriptor.",
)
@click.option(
    "--no-train",
    is_flag=True,
    help="Keep OUT's graph as it is; rebuild everything else (INT8, search, review, card).",
)
@click.option("--force", is_flag=True, help="Run every step again, even those done.")
@quiet_option
def build_model_click(
    train: Path,
    val: Path,
    out: Path,
    recipe: str,
    name: str | None,
    categories: Path | None,
    seed: int,
    epochs: int | None,
    checkpoint_dir: Path | None,
    open_set_classes: int,
    kind_weight: float | None,
    non_products: Path | None,
    reports: Path | None,
    card: Path | None,
    folds: int,
    max_top1_drop: float,
    search_dims: int,
    no_train: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Train, quantise, fit search and review, evaluate and write the card: a servable folder."""
    from dataclasses import replace  # noqa: PLC0415

    from inference.training.quantize import QuantizeConfig  # noqa: PLC0415

    train_options: dict[str, Any] = {"name": name, "categories_file": categories, "seed": seed}
    if recipe == "full":
        train_options["full"] = {
            "epochs": epochs,
            "checkpoint_dir": checkpoint_dir,
            "open_set_classes": open_set_classes,
            "kind_weight": kind_weight,
        }
    else:
        train_options["epochs"] = epochs
    build_options = {
        "quantize": replace(QuantizeConfig(), max_top1_drop=max_top1_drop),
        "non_products": non_products,
        "reports": reports,
        "card": card,
        "folds": folds,
        "search_dims": search_dims,
        "force": force,
    }
    sys.exit(
        build_model_command(
            train,
            val,
            out,
            recipe=recipe,
            train_options=train_options,
            build_options=build_options,
            progress=not quiet,
            retrain=not no_train,
            command="vitrine " + shlex.join(sys.argv[1:]),
        )
    )
