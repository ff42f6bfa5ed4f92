"""``vitrine train`` and ``vitrine evaluate``: thin command-line wrappers over ``inference``.

The work is done by :func:`inference.training.trainer.train` and
:func:`inference.training.evaluate.evaluate_model`; this module reads the settings
(execution providers, threads, batch size), prints a short summary and turns
errors into exit codes: 0 success, 2 bad input (data set, model directory,
options), 1 anything else.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
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

__all__ = ["evaluate_click", "evaluate_command", "train_click", "train_command"]

logger = logging.getLogger(__name__)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def train_command(
    data: Path,
    out: Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    head: str = "auto",
    val: Path | None = None,
    val_fraction: float = 0.15,
    augmentations: int = 8,
    finetune: str = "none",
    finetune_epochs: int | None = None,
    base_model: Path | None = None,
    name: str | None = None,
    categories: Path | None = None,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    progress: bool = True,
    recipe: str = "frozen",
    full: dict[str, Any] | None = None,
) -> int:
    """Train a model on ``data`` and write it to ``out``; return the exit code.

    ``recipe`` ``frozen`` trains heads on frozen features (numpy, minutes);
    ``full`` fine-tunes the whole network (PyTorch, the ``train-torch`` extra).
    ``full`` holds the full recipe's options (:func:`_full_recipe`).
    """
    from inference.serving.errors import InferenceError  # noqa: PLC0415
    from inference.training.torch_finetune import TailFinetuneConfig  # noqa: PLC0415
    from inference.training.trainer import TrainConfig, train  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415

    _setup_logging()
    settings = get_settings()
    ft = TailFinetuneConfig()
    if finetune_epochs is not None:
        ft = replace(ft, epochs=finetune_epochs)
    config = TrainConfig(
        data=Path(data),
        out=Path(out),
        val_data=val,
        val_fraction=val_fraction,
        base_model=base_model,
        name=name,
        head=head,
        augmentations=augmentations,
        epochs=epochs,
        finetune=finetune,
        finetune_config=ft,
        categories_file=categories,
        seed=seed,
        cache_dir=None if no_cache else (cache_dir or settings.state_dir / "features"),
        intra_op_threads=settings.model.intra_op_threads,
        progress=progress,
    )
    try:
        if recipe == "full":
            from inference.training.full_recipe import train_full  # noqa: PLC0415

            result = train_full(
                config, _full_recipe(seed, **(full or {})),
                on_step=lambda msg: click.echo(msg, err=True),
            )  # fmt: skip
        else:
            result = train(config, on_step=lambda msg: click.echo(msg, err=True))
    except (InferenceError, ValueError, OSError) as exc:
        click.echo(f"vitrine train: {exc}", err=True)
        return 2
    m = result.val_metrics
    click.echo(f"model: {result.manifest.name} {result.manifest.version} -> {result.model_dir}")
    click.echo(
        f"val: top-1 {m['top1_accuracy']:.4f}  top-5 {m['top5_accuracy']:.4f}  "
        f"macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}"
        + (f"  coarse {m['coarse_accuracy']:.4f}" if "coarse_accuracy" in m else "")
    )
    click.echo(f"serve it with: VITRINE_MODEL_PATH={result.model_dir} vitrine worker")
    return 0


def _full_recipe(
    seed: int,
    *,
    arch: str | None = None,
    size: int | None = None,
    epochs: int | None = None,
    checkpoint_dir: Path | None = None,
    open_set_classes: int = 0,
    ood_score: str | None = None,
    kind_weight: float | None = None,
) -> Any:
    """The full recipe's configuration: its defaults, with the options given."""
    from inference.training.full_finetune import FullFinetuneConfig  # noqa: PLC0415
    from inference.training.full_recipe import FullRecipe  # noqa: PLC0415
    from inference.training.torch_finetune import torch_available  # noqa: PLC0415

    if not torch_available():
        raise ValueError(
            "--recipe full needs PyTorch: install the train-torch extra in its own "
            "environment (python -m venv .venv-train && .venv-train/bin/pip install -e "
            "'.[train-torch]'), then run .venv-train/bin/vitrine train"
        )
    ft = FullFinetuneConfig(seed=seed)
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "arch": arch, "size": size, "epochs": epochs, "kind_weight": kind_weight,
        }.items()
        if v
    }  # fmt: skip
    base = FullRecipe(finetune=replace(ft, **changes), checkpoint_dir=checkpoint_dir,
                      open_set_classes=open_set_classes)  # fmt: skip
    return replace(base, ood_kind=ood_score) if ood_score else base


def evaluate_command(
    model_dir: Path,
    data: Path,
    out: Path | None = None,
    *,
    class_map: Path | None = None,
    batch_size: int | None = None,
    throughput_images: int = 256,
    compare_default: bool = True,
    as_json: bool = False,
    progress: bool = True,
    precision: str | None = None,
    non_products: Path | None = None,
) -> int:
    """Evaluate ``model_dir`` on ``data``; write a report to ``out`` when given.

    The review rule's routed share is also measured on ``non_products`` (a folder
    of images that are no product; None: 20 synthetic ones).
    """
    from inference.serving.errors import InferenceError  # noqa: PLC0415
    from inference.serving.manifest import default_model_dir  # noqa: PLC0415
    from inference.training.evaluate import (  # noqa: PLC0415
        evaluate_model,
        per_class_rows,
        render_markdown,
        write_report,
    )
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import engine_options  # noqa: PLC0415

    _setup_logging()
    settings = get_settings()
    baselines: list[Path] = []
    default = default_model_dir()
    if compare_default and throughput_images > 0:
        try:
            same = Path(model_dir).resolve() == default.resolve()
        except OSError:
            same = False
        if not same and (default / "manifest.json").is_file():
            baselines.append(default)
    try:
        result = evaluate_model(
            Path(model_dir),
            Path(data),
            class_map=class_map,
            options=replace(
                engine_options(settings, precision=precision),
                max_batch_size=batch_size or settings.model.max_batch_size,
            ),
            throughput_images=throughput_images,
            throughput_baselines=baselines,
            progress=progress,
            non_products=non_products if non_products is not None else "synthetic",
        )
    except (InferenceError, ValueError, OSError) as exc:
        click.echo(f"vitrine evaluate: {exc}", err=True)
        return 2
    if out is not None:
        paths = write_report(result, Path(out))
        click.echo(f"report: {', '.join(str(p) for p in paths)}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        text = render_markdown(result, per_class_rows(result))
        click.echo(text.split("![confusion matrix]")[0].rstrip())
    return 0


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Model directory to write (model.onnx + manifest.json).",
)
@click.option(
    "--val",
    "val",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Validation data (same layout); default: a stratified split of DATA.",
)
@click.option(
    "--val-fraction",
    default=0.15,
    show_default=True,
    help="Share of DATA held out for validation when --val is not given.",
)
@click.option(
    "--head",
    type=click.Choice(["auto", "linear", "mlp"]),
    default="auto",
    show_default=True,
    help="Classifier head; auto keeps the better on validation.",
)
@click.option(
    "--augmentations",
    default=8,
    show_default=True,
    help="Augmented views per training image (features cached).",
)
@click.option("--epochs", type=int, default=None, help="Maximum head epochs (early stopping).")
@click.option(
    "--finetune",
    type=click.Choice(["auto", "blocks", "none"]),
    default="none",
    show_default=True,
    help="Also fine-tune the backbone's last blocks (needs PyTorch; auto: if installed).",
)
@click.option("--finetune-epochs", type=int, default=None)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--base-model",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Backbone model directory (default: the shipped EfficientNet-Lite0).",
)
@name_option
@categories_option
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Feature cache (default: <VITRINE_STATE_DIR>/features, ~/.cache/vitrine/features).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@recipe_option
@click.option(
    "--arch",
    type=click.Choice(["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]),
    default=None,
    help="Full recipe: the ImageNet backbone to fine-tune (default efficientnet-lite0).",
)
@click.option("--size", type=int, default=None, help="Full recipe: training crop size.")
@click.option("--full-epochs", type=int, default=None, help="Full recipe: epochs.")
@checkpoint_dir_option
@open_set_classes_option
@kind_weight_option
@click.option(
    "--ood-score",
    type=click.Choice(["centroid", "energy"]),
    default=None,
    help="Full recipe: the OOD score the graph outputs (default centroid).",
)
@quiet_option
def train_click(
    data: Path,
    out: Path,
    val: Path | None,
    val_fraction: float,
    head: str,
    augmentations: int,
    epochs: int | None,
    finetune: str,
    finetune_epochs: int | None,
    seed: int,
    base_model: Path | None,
    name: str | None,
    categories: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    recipe: str,
    arch: str | None,
    size: int | None,
    full_epochs: int | None,
    checkpoint_dir: Path | None,
    open_set_classes: int,
    kind_weight: float | None,
    ood_score: str | None,
    quiet: bool,
) -> None:
    """Train a product classifier on DATA (class folders, or a Grocery Store list file)."""
    sys.exit(
        train_command(
            data,
            out,
            seed=seed,
            epochs=epochs,
            head=head,
            val=val,
            val_fraction=val_fraction,
            augmentations=augmentations,
            finetune=finetune,
            finetune_epochs=finetune_epochs,
            base_model=base_model,
            name=name,
            categories=categories,
            cache_dir=cache_dir,
            no_cache=no_cache,
            progress=not quiet,
            recipe=recipe,
            full={
                "arch": arch,
                "size": size,
                "epochs": full_epochs,
                "checkpoint_dir": checkpoint_dir,
                "open_set_classes": open_set_classes,
                "kind_weight": kind_weight,
                "ood_score": ood_score,
            },
        )
    )


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True))
@click.argument("data", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Report directory (metrics.json, per-class CSV/Markdown, charts).",
)
@click.option(
    "--class-map",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="CSV of data_class,model_label_or_category.",
)
@click.option("--batch-size", type=int, default=None, help="Default: VITRINE_MAX_BATCH_SIZE.")
@click.option(
    "--throughput-images",
    default=256,
    show_default=True,
    help="Images timed for images/s (0: skip).",
)
@click.option(
    "--compare-default/--no-compare-default",
    default=True,
    show_default=True,
    help="Also time the shipped model on the same images.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "int8"]),
    default=None,
    help="CPU graph to score (default: VITRINE_PRECISION, auto: INT8 where the model has one).",
)
@non_products_option
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@quiet_option
def evaluate_click(
    model_dir: Path,
    data: Path,
    out: Path | None,
    class_map: Path | None,
    batch_size: int | None,
    throughput_images: int,
    compare_default: bool,
    precision: str | None,
    non_products: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Score MODEL_DIR on DATA: accuracy, P/R/F1, calibration, review, confusion matrix, speed."""
    sys.exit(
        evaluate_command(
            model_dir,
            data,
            out,
            class_map=class_map,
            batch_size=batch_size,
            throughput_images=throughput_images,
            compare_default=compare_default,
            as_json=as_json,
            progress=not quiet,
            precision=precision,
            non_products=non_products,
        )
    )


def _quantize_lines(report: Any) -> list[str]:
    kept = "kept" if report.kept else "NOT kept"
    kernels = ", ".join(f"{op} x{n}" for op, n in list(report.kernels.items())[:6])
    return [
        f"INT8 graph of {report.model_dir}: {kept} "
        f"(limit: {report.config.max_top1_drop:.1%} top-1 below FP32)",
        f"  calibration: {report.config.calibration_images} training images, "
        f"{report.config.method}; draws (seed: top-1) "
        + ", ".join(f"{int(t['seed'])}: {t['top1_int8']:.2%}" for t in report.tries)
        + f"; kept draw {report.seed}",
        f"  top-1 on {report.val_images} validation images: FP32 {report.top1_fp32:.2%}, "
        f"INT8 {report.top1_int8:.2%} ({-report.top1_drop * 100:+.2f} points); "
        f"same top-1 {report.agreement:.2%}",
        f"  embedding cosine INT8 vs FP32, 5th percentile: {report.embedding_cosine_p5:.4f}",
        f"  model alone, batch 32: FP32 {report.fp32_images_per_s:.0f} images/s, "
        f"INT8 {report.int8_images_per_s:.0f} images/s ({report.speedup:.2f}x)",
        f"  kernels after ONNX Runtime's fusion: {kernels}",
    ]


@click.command("quantize")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("train_data", type=click.Path(path_type=Path, exists=True))
@click.argument("val_data", type=click.Path(path_type=Path, exists=True))
@click.option("--calibration-images", default=256, show_default=True, type=click.IntRange(8))
@click.option(
    "--method",
    type=click.Choice(["entropy", "percentile", "minmax"]),
    default="entropy",
    show_default=True,
    help="How activation ranges are chosen from the calibration histograms.",
)
@max_top1_drop_option
@click.option(
    "--tries",
    default=3,
    show_default=True,
    type=click.IntRange(1, 10),
    help="Calibration draws (seeds 0, 1, ...); the best on VAL_DATA is the candidate.",
)
@click.option(
    "--fp32-leading-convs",
    default=3,
    show_default=True,
    type=click.IntRange(0),
    help="First convolutions left in FP32 (EfficientNet-Lite: the stem and block 0).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def quantize_click(
    model_dir: Path,
    train_data: Path,
    val_data: Path,
    calibration_images: int,
    method: str,
    max_top1_drop: float,
    tries: int,
    fp32_leading_convs: int,
    as_json: bool,
) -> None:
    """Make an INT8 graph of MODEL_DIR for CPUs; keep it only if top-1 on VAL_DATA holds.

    Calibrates on TRAIN_DATA, scores INT8 against FP32 on VAL_DATA through the
    serving engine and, when kept, writes model.int8.onnx and the manifest's
    int8 section. Exits 1 when the graph was not kept.
    """
    from inference.training.dataset import load_dataset  # noqa: PLC0415
    from inference.training.quantize import QuantizeConfig, quantize_model  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import engine_options  # noqa: PLC0415

    _setup_logging()
    config = QuantizeConfig(
        calibration_images=calibration_images,
        method=method,  # type: ignore[arg-type]
        max_top1_drop=max_top1_drop,
        tries=tries,
        fp32_leading_convs=fp32_leading_convs,
    )
    options = engine_options(get_settings())
    report = quantize_model(
        model_dir, load_dataset(train_data), load_dataset(val_data), config, options
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo("\n".join(_quantize_lines(report)))
    sys.exit(0 if report.kept else 1)
