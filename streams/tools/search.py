"""The visual-search commands: ``fit-search``, ``evaluate-search`` and ``similar``.

``fit-search`` and ``evaluate-search`` run the engine over the data set's train
and val splits (:mod:`inference.training.search_eval`; no Kafka); ``similar``
sends an image to a running worker's ``POST /similar`` and prints the nearest
listed products.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

__all__ = ["bench_search_command", "evaluate_search_click", "fit_search_click", "similar_click"]

DEFAULT_DATA = Path("../shared/datasets/grocery-store")

_data_option = click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=DEFAULT_DATA,
    show_default=True,
    help="Folder with train.txt and val.txt (Grocery Store layout).",
)
_model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Model directory (default: VITRINE_MODEL_PATH or the shipped model).",
)


def _engine(model_dir: Path | None) -> Any:
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import build_engine  # noqa: PLC0415

    return build_engine(get_settings(), model_dir=model_dir)


def _cache_dir() -> Path:
    from streams.settings import get_settings  # noqa: PLC0415

    return get_settings().state_dir / "search"


@click.command("fit-search")
@_data_option
@_model_option
@click.option("--dims", default=128, show_default=True, type=click.IntRange(8, 1024))
@click.option(
    "--whiten",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="0: plain PCA; 1: full whitening (each component to unit variance).",
)
def fit_search_click(data_dir: Path, model_dir: Path | None, dims: int, whiten: float) -> None:
    """Fit the compact search descriptor on the train split; write it beside the model."""
    from inference.training.search_eval import fit_search_projection  # noqa: PLC0415

    engine = _engine(model_dir)
    manifest = fit_search_projection(
        engine, data_dir / "train.txt", dims=dims, whiten=whiten, cache_dir=_cache_dir()
    )
    click.echo(f"wrote {manifest.projection_path} (sha256 {manifest.projection_sha256})")


@click.command("evaluate-search")
@_data_option
@_model_option
@click.option(
    "--mirror", is_flag=True, help="Average each photo's embedding with its mirror image's."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate_search_click(
    data_dir: Path, model_dir: Path | None, mirror: bool, as_json: bool
) -> None:
    """Val photos as queries against the train split: precision@1 and recall@10 by descriptor."""
    from inference.training.search_eval import (  # noqa: PLC0415
        evaluate_search,
        format_scores,
        scores_json,
    )

    engine = _engine(model_dir)
    scores = evaluate_search(
        engine,
        data_dir / "train.txt",
        data_dir / "val.txt",
        cache_dir=_cache_dir(),
        mirror=mirror,
        progress=not as_json,
    )
    if as_json:
        click.echo(json.dumps({"mirror": mirror, "scores": scores_json(scores)}, indent=2))
    else:
        click.echo(format_scores(scores))


def run_search_bench(n_vectors: int = 100_000, model_dir: Path | None = None) -> dict[str, Any]:
    """``bench search``'s rows as JSON-able dicts, and the served setting's figures.

    The served setting is the float16 HNSW index at ``VITRINE_SEARCH_EXPANSION``.
    """
    from dataclasses import asdict  # noqa: PLC0415

    from inference.training.search_bench import bench_search, real_descriptors  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415

    if not (DEFAULT_DATA / "train.txt").is_file():
        raise click.ClickException(f"bench search needs {DEFAULT_DATA}/train.txt")
    real = real_descriptors(_engine(model_dir), DEFAULT_DATA, _cache_dir())
    rows = bench_search(real, n=n_vectors)
    served = f"usearch hnsw f16 M=16 ef={get_settings().search.expansion}"
    row = next((r for r in rows if r.index == served), None)
    summary = {}
    if row is not None:
        summary = {
            "index": row.index,
            "vectors": row.vectors,
            "recall@10": round(row.recall_at_10, 4),
            "p50 / p99 ms": f"{row.p50_ms:.2f} / {row.p99_ms:.2f}",
            "MiB per million vectors": round(row.mib_per_million),
            "indexing vectors/s": round(row.build_vectors_per_s or 0),
        }
    return {"real_descriptors": len(real), "rows": [asdict(r) for r in rows], "summary": summary}


def bench_search_command(*, as_json: bool, n_vectors: int, model_dir: Path | None) -> int:
    """``vitrine bench search``: the index against exact search on ``n_vectors`` descriptors."""
    from inference.training.search_bench import (  # noqa: PLC0415
        bench_json,
        bench_search,
        format_bench,
        real_descriptors,
    )

    if not (DEFAULT_DATA / "train.txt").is_file():
        raise click.ClickException(
            f"bench search starts from the data set's real descriptors: no {DEFAULT_DATA}/train.txt"
            " (run it from the repository root, beside ../shared)"
        )
    started = time.monotonic()
    real = real_descriptors(_engine(model_dir), DEFAULT_DATA, _cache_dir())
    rows = bench_search(real, n=n_vectors)
    if as_json:
        click.echo(bench_json(rows))
    else:
        click.echo(format_bench(rows))
        click.echo(
            f"({len(real):,} real descriptors, the rest synthetic; 1,000 single queries; "
            f"{time.monotonic() - started:.0f} s)"
        )
    return 0


@click.command("similar")
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--category", default=None, help="Only products of this category.")
@click.option("--json", "as_json", is_flag=True, help="Print the worker's JSON answer.")
@click.option("--url", default=None, help="Worker web address (default: VITRINE_WEB_HOST:PORT).")
def similar_click(
    image: Path, k: int, category: str | None, as_json: bool, url: str | None
) -> None:
    """The listed products that look most like IMAGE (asks a running worker)."""
    from streams.settings import get_settings  # noqa: PLC0415

    s = get_settings()
    base = url or f"http://{s.web.host}:{s.web.port}"
    query = f"?k={k}" + (f"&category={category}" if category else "")
    req = urllib.request.Request(f"{base}/similar{query}", data=image.read_bytes(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{base} answered {exc.code}: {exc.read().decode()}") from None
    except OSError as exc:
        raise click.ClickException(f"no worker at {base} (vitrine worker): {exc}") from None
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(
        f"{image}: looks like {body['label']} ({body['category']}); {body['indexed']} indexed"
    )
    for i, hit in enumerate(body["items"], 1):
        pid, score = hit["product_id"], hit["score"]
        click.echo(f"{i:3}. {pid:40} {score:7.4f}  {hit['category']:12} {hit['label']}")
    sys.stdout.flush()
