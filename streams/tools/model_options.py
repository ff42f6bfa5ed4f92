"""Command-line options the model commands share (``train``, ``build-model``, ...).

One definition each, so ``vitrine train`` and ``vitrine build-model`` take the
same option with the same meaning and help.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = [
    "categories_option",
    "checkpoint_dir_option",
    "kind_weight_option",
    "max_top1_drop_option",
    "name_option",
    "non_products_option",
    "open_set_classes_option",
    "quiet_option",
    "recipe_option",
]

recipe_option = click.option(
    "--recipe",
    type=click.Choice(["frozen", "full"]),
    default="frozen",
    show_default=True,
    help="frozen: heads on frozen features (numpy, minutes); full: fine-tune the whole "
    "network (PyTorch, the train-torch extra; about an hour), calibrated, with an OOD score.",
)
name_option = click.option(
    "--name", default=None, help="Model name (default: the --out folder's name)."
)
categories_option = click.option(
    "--categories",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="CSV of class,category (default: coarse class, else the class name).",
)
checkpoint_dir_option = click.option(
    "--checkpoint-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Full recipe: where each epoch's checkpoint goes (default <out>/.checkpoint); "
    "a rerun with the same options resumes from it.",
)
open_set_classes_option = click.option(
    "--open-set-classes",
    type=int,
    default=0,
    show_default=True,
    help="Full recipe: also train with this many classes left out and record how well "
    "their images are flagged (open-set AUROC) in the manifest.",
)
kind_weight_option = click.option(
    "--kind-weight",
    type=click.FloatRange(0.0),
    default=None,
    help="Full recipe: weight of the kind-level loss beside the products' (default 0).",
)
non_products_option = click.option(
    "--non-products",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Folder of images that are no product, for the routed share (default: 20 synthetic).",
)
max_top1_drop_option = click.option(
    "--max-top1-drop",
    default=0.005,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Most top-1 accuracy (fraction) the INT8 graph may lose against FP32 on validation.",
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
