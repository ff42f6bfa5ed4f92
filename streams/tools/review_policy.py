"""``vitrine review-policy``: a thin command over :mod:`inference.training.review_report`.

It reads the settings the worker honours (providers, threads, batch size, precision),
so the thresholds are fitted on the graph the worker serves, prints the Markdown
report, and turns errors into exit codes: 0 success, 2 bad input, 1 anything else.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import click

__all__ = ["review_policy_click"]

logger = logging.getLogger(__name__)


@click.command("review-policy")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    required=True,
    help="Labelled data (folder or list file); repeat for several, e.g. train and val.",
)
@click.option(
    "--fit-on",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="The --data sets the shipped thresholds are fitted on (default: all of them).",
)
@click.option(
    "--unseen",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="The --data sets the network never trained on: also measured by k-fold alone.",
)
@click.option(
    "--non-products",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Folder of images that are no product (default: 20 synthetic ones).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--folds", default=5, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-routed", default=0.15, show_default=True)
@click.option("--kind-accuracy", default=0.98, show_default=True)
@click.option("--category-accuracy", default=0.995, show_default=True)
@click.option("--non-products-routed", default=0.90, show_default=True)
@click.option(
    "--product-accuracy",
    default=0.95,
    show_default=True,
    help="Kept photos above product_threshold are this right (uncertain_product, informational).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the model outputs are cached (a rerun computes them once).",
)
@click.option(
    "--write-manifest",
    is_flag=True,
    help="Write the fitted thresholds into MODEL_DIR/manifest.json's review object.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "int8"]),
    default=None,
    help="CPU graph (default: VITRINE_PRECISION, as the worker).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def review_policy_click(
    model_dir: Path,
    data: tuple[Path, ...],
    fit_on: tuple[Path, ...],
    unseen: tuple[Path, ...],
    non_products: Path | None,
    out: Path,
    folds: int,
    seed: int,
    max_routed: float,
    kind_accuracy: float,
    category_accuracy: float,
    non_products_routed: float,
    product_accuracy: float,
    cache_dir: Path | None,
    write_manifest: bool,
    precision: str | None,
    quiet: bool,
) -> None:
    """Fit the review thresholds on the served graph; k-fold, trade-off, report."""
    from inference.serving.errors import InferenceError  # noqa: PLC0415
    from inference.training.review_policy import Targets  # noqa: PLC0415
    from inference.training.review_report import (  # noqa: PLC0415
        render_markdown,
        review_policy,
        write_manifest_thresholds,
        write_report,
    )
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import engine_options  # noqa: PLC0415

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    command = "vitrine " + shlex.join(sys.argv[1:])
    unknown = [str(p) for p in (*fit_on, *unseen) if p not in data]
    if unknown:
        click.echo(f"vitrine review-policy: not among --data: {', '.join(unknown)}", err=True)
        sys.exit(2)
    try:
        report = review_policy(
            model_dir,
            data,
            fit_on=fit_on,
            unseen=unseen,
            non_products=non_products,
            targets=Targets(
                max_routed, kind_accuracy, category_accuracy, non_products_routed, product_accuracy
            ),
            folds=folds,
            seed=seed,
            options=engine_options(settings, precision=precision),
            cache_dir=cache_dir,
            progress=not quiet,
        )
    except (InferenceError, ValueError, OSError) as exc:
        click.echo(f"vitrine review-policy: {exc}", err=True)
        sys.exit(2)
    paths = write_report(report, out, command)
    click.echo(f"report: {', '.join(str(p) for p in paths)}", err=True)
    if write_manifest:
        fitted = report["fit"]["thresholds"]
        from inference.serving.review import ReviewThresholds  # noqa: PLC0415

        note = f"{command} ({report['engine']['precision']}, on {', '.join(report['fit_on'])})"
        path = write_manifest_thresholds(model_dir, ReviewThresholds(**fitted), note)
        click.echo(f"thresholds written to {path}", err=True)
    click.echo(render_markdown(report, command).split("![trade-off]")[0].rstrip())
