"""``vitrine``: the worker and the project's commands, in one click group.

``vitrine worker`` is Faust's worker command, run with vitrine's app; Faust's
other generic commands (``tables``, ``reset``, ``livecheck``, ...) still run but
are hidden from ``--help``, which describes vitrine and lists its commands by
what they are for (:data:`SECTIONS`). Heavy modules are imported inside each
command, so ``vitrine stack status`` does not load a model.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import click

__all__ = ["HELP", "SECTIONS", "build_cli", "main"]

logger = logging.getLogger(__name__)


def _quiet_client_logs() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("kafka", "aiokafka", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _refused_access() -> Iterator[None]:
    """A cluster that refuses the client's credentials or CA: the message, exit 1, no traceback."""
    from streams.worker.kafka_config import KafkaAccessError  # noqa: PLC0415

    try:
        yield
    except KafkaAccessError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("stack")
@click.argument("action", type=click.Choice(["up", "down", "status"]))
@click.option("--timeout", "timeout_s", default=180.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--secure",
    is_flag=True,
    help="Also a Kafka SASL_SSL listener (SCRAM-SHA-512) and Redis TLS with an ACL user.",
)
def stack_command(action: str, timeout_s: float, secure: bool) -> None:
    """Start, stop or show the native local Kafka + Redis stack."""
    import time  # noqa: PLC0415

    from streams.settings import get_settings  # noqa: PLC0415
    from streams.tools.stack import Stack, StackError  # noqa: PLC0415

    _quiet_client_logs()
    stack = Stack(get_settings(), name="default", secure=secure)
    started = time.monotonic()
    try:
        if action == "up":
            stack.up(timeout_s=timeout_s)
            click.echo(f"stack ready in {time.monotonic() - started:.1f} s")
            if secure:
                click.echo("clients of the secured listeners take these settings:")
                click.echo(stack.secure_client_shell(), nl=False)
        elif action == "down":
            stack.down()
            click.echo("stack stopped")
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    states = stack.status()
    for st in states:
        click.echo(st.line())
    if action == "status" and not all(st.running for st in states):
        sys.exit(1)


@click.command("demo")
@click.option(
    "--worker/--no-worker",
    "start_worker",
    default=True,
    show_default=True,
    help="Start a worker for the demo when none answers on the web port.",
)
@click.option("--timeout", "timeout_s", default=180.0, show_default=True)
def demo_command(start_worker: bool, timeout_s: float) -> None:
    """Publish sample listings and orders; print labelled, enriched and dead-lettered events."""
    from streams.tools.demo import run_demo  # noqa: PLC0415

    _quiet_client_logs()
    with _refused_access():
        code = run_demo(start_worker=start_worker, timeout_s=timeout_s)
    sys.exit(code)


@click.command("simulate")
@click.option("--days", default=365, show_default=True, type=click.IntRange(7, 3660))
@click.option("--orders-per-day", default=60.0, show_default=True, type=click.FloatRange(1, 10_000))
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First day (UTC); default: DAYS days ago.",
)
@click.option("--worker/--no-worker", "start_worker", default=True, show_default=True)
@click.option("--timeout", "timeout_s", default=180.0, show_default=True)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the generator's ground truth (revenue by category, region, season) as JSON.",
)
def simulate_command(
    days: int,
    orders_per_day: float,
    seed: int,
    start: datetime | None,
    start_worker: bool,
    timeout_s: float,
    truth_path: Path | None,
) -> None:
    """Back-fill a simulated year of orders (seasons, promotions, baskets) through the pipeline."""
    from datetime import UTC  # noqa: PLC0415

    from streams.tools.simulate.command import run_simulate  # noqa: PLC0415

    _quiet_client_logs()
    with _refused_access():
        code = run_simulate(
            days=days,
            orders_per_day=orders_per_day,
            seed=seed,
            start=start.replace(tzinfo=UTC) if start else None,
            start_worker=start_worker,
            timeout_s=timeout_s,
            truth_path=truth_path,
        )
    sys.exit(code)


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--top-k", default=5, show_default=True)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Model directory (default: VITRINE_MODEL_PATH or the shipped model).",
)
def predict_command(
    images: tuple[Path, ...], as_json: bool, top_k: int, model_dir: Path | None
) -> None:
    """Label image files with the model."""
    from streams.tools.predict import run_predict  # noqa: PLC0415

    sys.exit(run_predict(list(images), as_json=as_json, top_k=top_k, model_dir=model_dir))


@click.command("bench")
@click.argument(
    "target",
    type=click.Choice(
        [
            "inference",
            "pipeline",
            "consume",
            "codecs",
            "soak",
            "search",
            "rebuild",
            "cluster",
            "integrity",
            "console",
            "verify",
            "all",
            "doc",
        ]
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-sizes", default=None, help="Comma-separated, e.g. 1,8,32 (inference).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None)
@click.option(
    "--images-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Photos to use instead of the shipped samples (inference).",
)
@click.option(
    "--images", "n_images", default=512, show_default=True, help="Events to publish (pipeline)."
)
@click.option(
    "--trials",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Engine / pipeline / naive trials, side by side (pipeline).",
)
@click.option(
    "--events",
    "n_events",
    default=20_000,
    show_default=True,
    help="Orders to publish and consume (consume; cluster: per trial, default 20,000).",
)
@click.option(
    "--workers",
    "worker_counts",
    default=None,
    help="Worker processes, each pinned to a core of its own, to compare, e.g. 1,2 "
    "(pipeline, all).",
)
@click.option(
    "--products",
    "n_products",
    default=1_000_000,
    show_default=True,
    help="Product labels to rebuild the view from (rebuild).",
)
@click.option("--minutes", default=10.0, show_default=True, help="Soak duration (soak).")
@click.option(
    "--vectors", "n_vectors", default=100_000, show_default=True, help="Index size (search)."
)
@click.option(
    "--listings",
    "n_listings",
    default=1_000_000,
    show_default=True,
    help="Index size for lookups (integrity; rebuild and bytes at up to 100k).",
)
@click.option("--interval", "interval_s", default=5.0, show_default=True, help="Seconds (soak).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder: soak.json and soak.png (soak, default out/soak); every report, "
    "plot and summary.md (all, default out/bench); console.json (console, default out/bench).",
)
def bench_command(
    target: str,
    as_json: bool,
    batch_sizes: str | None,
    model_dir: Path | None,
    images_dir: Path | None,
    n_images: int,
    trials: int,
    n_events: int,
    worker_counts: str | None,
    n_products: int,
    minutes: float,
    n_vectors: int,
    n_listings: int,
    interval_s: float,
    out_dir: Path | None,
) -> None:
    """Measure inference, the pipeline against its baselines, consuming, codecs, search, integrity.

    ``cluster``: orders/s on one Redis and on a local Redis Cluster, side by side.
    ``verify`` measures what catching disguised copies (local features, embedding
    neighbours, their verification) adds to a photo's model stage, in one run.

    ``all`` runs inference, the pipeline (with its baselines, listings by URI,
    pinned workers) and search into one folder; ``doc`` writes its figures
    (``--out``, default docs/performance) into docs/PERFORMANCE.md.
    """
    sizes = [int(x) for x in batch_sizes.split(",")] if batch_sizes else None
    workers = [int(x) for x in worker_counts.split(",")] if worker_counts else []
    if target in ("search", "integrity", "verify", "inference", "codecs", "console", "doc"):
        sys.exit(
            _bench_without_stack(
                target, as_json, sizes, model_dir, images_dir, n_vectors, n_listings, out_dir
            )
        )
    _quiet_client_logs()
    if target == "rebuild":
        from streams.tools.rebuild import bench_rebuild_command  # noqa: PLC0415

        with _refused_access():
            sys.exit(bench_rebuild_command(as_json=as_json, n_products=n_products))
    if target == "soak":
        from streams.tools.bench.soak import bench_soak_command  # noqa: PLC0415

        sys.exit(
            bench_soak_command(
                minutes=minutes, interval_s=interval_s, out_dir=out_dir or Path("out/soak")
            )
        )
    if target == "all":
        from streams.tools.bench.all import bench_all_command  # noqa: PLC0415

        with _refused_access():
            code = bench_all_command(
                out_dir or Path("out/bench"), n_images=n_images, trials=trials,
                workers=workers or [1, 2], batch_sizes=sizes, search_vectors=n_vectors,
            )  # fmt: skip
        sys.exit(code)
    if target == "cluster":
        from streams.tools.bench.cluster import bench_cluster_command  # noqa: PLC0415

        with _refused_access():
            code = bench_cluster_command(
                as_json=as_json, n_products=min(n_images, 64), n_orders=n_events, trials=trials
            )
        sys.exit(code)
    if target == "consume":
        from streams.tools.bench.consume import bench_consume_command  # noqa: PLC0415

        with _refused_access():
            code = bench_consume_command(as_json=as_json, n_events=n_events)
        sys.exit(code)
    from streams.tools.bench.pipeline import bench_pipeline_command  # noqa: PLC0415

    with _refused_access():
        code = bench_pipeline_command(
            as_json=as_json, n_images=n_images, trials=trials, workers=workers
        )
    sys.exit(code)


def _bench_doc(folder: Path) -> int:
    """Write the figures of the ``bench all`` run in ``folder`` into docs/PERFORMANCE.md."""
    from streams.tools.bench.all import write_doc  # noqa: PLC0415

    changed = write_doc(Path("docs/PERFORMANCE.md"), folder)
    click.echo(f"docs/PERFORMANCE.md {'updated from' if changed else 'already has'} {folder}")
    return 0


def _bench_without_stack(
    target: str,
    as_json: bool,
    sizes: list[int] | None,
    model_dir: Path | None,
    images_dir: Path | None,
    n_vectors: int,
    n_listings: int,
    out_dir: Path | None,
) -> int:
    """The benchmarks that need no Kafka or Redis: search, integrity, inference, codecs, console."""
    if target == "doc":
        return _bench_doc(out_dir or Path("docs/performance"))
    if target == "console":
        from streams.tools.bench.console import bench_console_command  # noqa: PLC0415

        return bench_console_command(as_json=as_json, out_dir=out_dir)
    if target == "search":
        from streams.tools.search import bench_search_command  # noqa: PLC0415

        return bench_search_command(as_json=as_json, n_vectors=n_vectors, model_dir=model_dir)
    if target == "integrity":
        from streams.tools.bench.integrity import bench_integrity_command  # noqa: PLC0415

        return bench_integrity_command(as_json=as_json, n_listings=n_listings)
    if target == "verify":
        from streams.tools.bench.verify import bench_verify_command  # noqa: PLC0415

        return bench_verify_command(as_json=as_json)
    if target == "inference":
        from streams.tools.bench.inference import run_bench_inference  # noqa: PLC0415

        return run_bench_inference(
            as_json=as_json, batch_sizes=sizes, model_dir=model_dir, images_dir=images_dir
        )
    from streams.tools.bench.codecs import bench_codecs_command  # noqa: PLC0415

    return bench_codecs_command(as_json=as_json)


@click.command("console")
@click.option("--host", default=None, help="Address to listen on (VITRINE_CONSOLE_HOST).")
@click.option("--port", type=int, default=None, help="Port (VITRINE_CONSOLE_PORT).")
@click.option(
    "--dev",
    is_flag=True,
    help="Without VITRINE_CONSOLE_SECRET on 127.0.0.1: make up a secret and log it.",
)
def console_command(host: str | None, port: int | None, dev: bool) -> None:
    """Serve the reviewers' console: flagged listings, decisions to label-corrections."""
    from streams.console.auth import ConsoleConfigError  # noqa: PLC0415
    from streams.console.command import run_console  # noqa: PLC0415
    from streams.settings import get_settings  # noqa: PLC0415

    s = get_settings()
    changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if dev:
        changes["dev"] = True
    if changes:
        s = s.model_copy(update={"console": s.console.model_copy(update=changes)})
    _quiet_client_logs()
    try:
        run_console(s)
    except ConsoleConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("rebuild")
@click.option(
    "--reset",
    is_flag=True,
    help="First drop the views' keys and offsets, so every builder reads the topics again.",
)
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True)
def rebuild_command(reset: bool, timeout_s: float) -> None:
    """Rebuild the Redis views (product categories, recommendations) from the record topics."""
    import asyncio  # noqa: PLC0415

    from streams.settings import get_settings  # noqa: PLC0415
    from streams.tools.rebuild import rebuild_views  # noqa: PLC0415

    _quiet_client_logs()
    with _refused_access():
        result = asyncio.run(
            rebuild_views(get_settings(), reset=reset, timeout_s=timeout_s, say=click.echo)
        )
    click.echo(
        f"views cover product-labels and orders-enriched: {result.records} records applied "
        f"here in {result.seconds:.1f} s"
    )


@click.group("corrections")
def corrections_group() -> None:
    """Reviewers' corrections (label-corrections): export them for training, measure them."""


@corrections_group.command("export")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/corrections"),
    show_default=True,
    help="Where to write <label>/<sha256>.<format> and corrections.csv.",
)
@click.option("--timeout", "timeout_s", default=600.0, show_default=True)
def corrections_export_command(out_dir: Path, timeout_s: float) -> None:
    """Write reviewers' corrected photos as a class-per-folder data set and a CSV."""
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.tools.corrections import run_export  # noqa: PLC0415

    _quiet_client_logs()
    with _refused_access():
        result = run_export(get_settings(), out_dir, timeout_s=timeout_s, say=click.echo)
    click.echo(
        f"{result.corrected} corrected photos, {result.written} of them found inline on "
        f"product-images and written under {out_dir}; the list: {result.csv_path}"
    )


@corrections_group.command("evaluate")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model directory (default: the one the worker serves).",
)
@click.option(
    "--train",
    "train",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="The data the model was trained on (class folders or a list file).",
)
@click.option(
    "--val",
    "val",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Data the model never trained on; its errors stand for the corrections.",
)
@click.option(
    "--repeats", default=5, show_default=True, help="Runs (head seeds; random splits: new splits)."
)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    type=int,
    default=(1, 5),
    show_default=True,
    help="Times each correction is repeated in the training set (one run each).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--split",
    type=click.Choice(["contiguous", "random"]),
    default="contiguous",
    show_default=True,
    help="Halves of each class: first and second half in file order (shots taken in a row "
    "stay together), or random.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/corrections"),
    show_default=True,
    help="Where to write report.md and folds.json.",
)
def corrections_evaluate_command(
    model_dir: Path | None, train: Path, val: Path, repeats: int, weights: tuple[int, ...],
    seed: int, split: str, out_dir: Path,
) -> None:  # fmt: skip
    """Measure on val whether folding corrections of the model's errors raises its accuracy."""
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415
    import shlex  # noqa: PLC0415

    from inference.serving.manifest import default_model_dir  # noqa: PLC0415
    from inference.training.corrections_eval import (  # noqa: PLC0415
        evaluate_corrections,
        render_markdown,
        summary,
    )
    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.model import engine_options  # noqa: PLC0415

    settings = get_settings()
    folder = model_dir or settings.model.model_path or default_model_dir()
    folds = evaluate_corrections(
        folder, train, val, repeats=repeats, weights=weights, seed=seed, split=split,
        options=engine_options(settings),
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "vitrine corrections evaluate " + shlex.join(sys.argv[3:])
    (out_dir / "report.md").write_text(render_markdown(folds, command=command), encoding="utf-8")
    rows = summary(folds)
    data = {"summary": rows, "folds": [dataclasses.asdict(f) for f in folds]}
    (out_dir / "folds.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for row in rows:
        click.echo(
            f"weight {row['weight']}: corrected classes of B "
            f"{100 * row['baseline_accuracy_corrected']:.1f}% -> "
            f"{100 * row['with_corrections_accuracy_corrected']:.1f}% "
            f"(served {100 * row['served_accuracy_corrected']:.1f}%); all of B "
            f"{100 * row['baseline_accuracy']:.1f}% -> "
            f"{100 * row['with_corrections_accuracy']:.1f}%"
        )
    click.echo(f"report: {out_dir / 'report.md'}")


@click.command("report")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out/report"),
    show_default=True,
    help="Folder for report.md, the PNG charts and the CSV files.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=10.0,
    show_default=True,
    help="Seconds to read the category-sales topic.",
)
@click.option("--top", default=10, show_default=True, help="Rows per printed table.")
@click.option(
    "--period",
    type=click.Choice(["week", "month", "quarter"]),
    default="month",
    show_default=True,
    help="Growth compares the last full period with the one before.",
)
@click.option(
    "--min-orders",
    default=50,
    show_default=True,
    type=click.IntRange(1),
    help="Orders a category x region pair needs in the previous period to be a mover.",
)
def report_command(
    out_dir: Path,
    timeout_s: float,
    top: int,
    period: Literal["week", "month", "quarter"],  # click.Choice checked it
    min_orders: int,
) -> None:
    """Rank category sales, show movers and a next-week forecast (terminal + report folder)."""
    from streams.tools.report import run_report  # noqa: PLC0415

    _quiet_client_logs()
    with _refused_access():
        code = run_report(
            out_dir=out_dir,
            timeout_s=timeout_s,
            top=top,
            period=period,
            min_orders=min_orders,
        )
    sys.exit(code)


@click.command("recommend")
@click.argument("product_id")
@click.option("--region", default=None, help="Top up from popularity in this region and season.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def recommend_command(product_id: str, region: str | None, k: int, as_json: bool) -> None:
    """Products bought with PRODUCT_ID (Redis), topped up from its category's popularity."""
    import asyncio  # noqa: PLC0415
    import json  # noqa: PLC0415

    from streams.settings import get_settings  # noqa: PLC0415
    from streams.worker.cache import CacheUnavailable, LabelCache  # noqa: PLC0415
    from streams.worker.recommend import (  # noqa: PLC0415
        Recommendations,
        RecommendConfig,
        Recommender,
    )

    s = get_settings()

    async def query() -> Recommendations:
        cache = LabelCache.from_settings(s)
        try:
            recommender = Recommender(cache, RecommendConfig.from_settings(s))
            return await recommender.recommend(product_id, region=region, k=k)
        finally:
            await cache.close()

    try:
        recs = asyncio.run(query())
    except CacheUnavailable as exc:
        raise click.ClickException(f"Redis unavailable (VITRINE_REDIS_URL): {exc}") from None
    if as_json:
        click.echo(json.dumps(recs.to_json(), indent=2))
        return
    click.echo(
        f"{product_id}: category {recs.category or '(not labelled)'}, "
        f"region {recs.region or '(any)'}, season {recs.season or '(any)'}"
    )
    for i, r in enumerate(recs.items, 1):
        click.echo(f"{i:3}. {r.product_id:40} {r.score:10.4g}  {r.source}")


@click.command("evaluate-recs")
@click.option("--days", default=365, show_default=True, type=click.IntRange(60, 3660))
@click.option("--seed", default=7, show_default=True)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 24))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate_recs_command(days: int, seed: int, k: int, as_json: bool) -> None:
    """Score the recommendations on a simulated year (time split) against popularity."""
    from streams.tools.recommend_eval import run_evaluate_recs  # noqa: PLC0415

    sys.exit(run_evaluate_recs(days=days, seed=seed, k=k, as_json=as_json))


@click.command("evaluate-duplicates")
@click.argument(
    "data",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=Path("../shared/datasets/grocery-store"),
)
@click.option(
    "--fit-split",
    default="train",
    show_default=True,
    help="List file the thresholds are fitted on.",
)
@click.option(
    "--check-split",
    default="val",
    show_default=True,
    help="List file they are checked on ('' for none).",
)
@click.option(
    "--limit", type=click.IntRange(2), default=None, help="At most this many photos per split."
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write duplicates.json and duplicates.md there (e.g. docs/integrity).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the splits' fingerprints there and reuse them (e.g. /tmp/vitrine-duplicates).",
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--max-fp-rate", default=0.005, show_default=True, type=click.FloatRange(0, 1),
    help="Largest false-positive rate the fitted thresholds may have on the fit split.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate_duplicates_command(
    data: Path,
    fit_split: str,
    check_split: str,
    limit: int | None,
    seed: int,
    max_fp_rate: float,
    as_json: bool,
    report_dir: Path | None,
    cache_dir: Path | None,
) -> None:
    """Detection and false-positive rates of the near-duplicate rule; fits its thresholds.

    DATA holds <split>.txt list files (the Grocery Store layout); the test split is refused.
    """
    from streams.tools.evaluate_duplicates import run_evaluate_duplicates  # noqa: PLC0415

    _quiet_client_logs()
    sys.exit(
        run_evaluate_duplicates(
            data,
            fit_split=fit_split,
            check_split=check_split or None,
            limit=limit,
            seed=seed,
            max_fp_rate=max_fp_rate,
            as_json=as_json,
            report_dir=report_dir,
            cache_dir=cache_dir,
        )
    )


@click.command("export-model")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def export_model_command(out_dir: Path) -> None:
    """Export the default EfficientNet-Lite0 to ONNX (needs torch; see docs/TRAINING.md)."""
    from inference.training import export  # noqa: PLC0415

    sys.exit(export.main(["--out", str(out_dir)]))


def _add_training_commands(group: click.Group) -> None:
    from streams.tools import build_model as build_cmds  # noqa: PLC0415
    from streams.tools import review_policy as review_cmds  # noqa: PLC0415
    from streams.tools import search as search_cmds  # noqa: PLC0415
    from streams.tools import train as train_cmds  # noqa: PLC0415

    group.add_command(train_cmds.train_click)
    group.add_command(train_cmds.evaluate_click)
    group.add_command(train_cmds.quantize_click)
    group.add_command(build_cmds.build_model_click)
    group.add_command(review_cmds.review_policy_click)
    group.add_command(search_cmds.fit_search_click)
    group.add_command(search_cmds.evaluate_search_click)
    group.add_command(search_cmds.similar_click)


HELP = """vitrine labels product photos from Kafka with a CNN (ONNX Runtime), enriches
orders with their products' categories, aggregates category sales by region
and season, flags copied listings, and serves visual search and
recommendations. Kafka is the record; Redis holds views rebuilt from it.

Settings come from VITRINE_* environment variables (docs/CONFIGURATION.md).
Start with `vitrine stack up`, `vitrine worker` and `vitrine demo`; `vitrine
COMMAND --help` tells more."""

#: The help's sections: a title and its commands, in the order listed.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Run", ("worker", "stack", "console", "rebuild")),
    ("Try", ("demo", "simulate", "predict", "recommend", "similar")),
    ("Analyse", ("report", "evaluate-recs")),
    (
        "Models",
        (
            "build-model",
            "train",
            "evaluate",
            "review-policy",
            "quantize",
            "export-model",
            "corrections",
        ),
    ),
    ("Search and integrity", ("fit-search", "evaluate-search", "evaluate-duplicates")),
    ("Measure", ("bench",)),
)

#: Faust's worker command says "Start worker instance for given app".
_SHORT_HELP = {
    "worker": "Run a worker: label images, enrich orders, aggregate sales, serve the API."
}


def _group_class() -> type[click.Group]:
    from faust.cli.base import _Group  # noqa: PLC0415

    class VitrineGroup(_Group):
        """Faust's root group (it hands the app to the commands), with vitrine's help."""

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            listed = {c: self.get_command(ctx, c) for c in self.list_commands(ctx)}
            visible = {n: c for n, c in listed.items() if c is not None and not c.hidden}
            sections = [*SECTIONS, ("Other", tuple(sorted(visible.keys() - _sectioned())))]
            for title, names in sections:
                rows = [
                    (n, _SHORT_HELP.get(n) or visible[n].get_short_help_str(limit=120))
                    for n in names
                    if n in visible
                ]
                if rows:
                    with formatter.section(title):
                        formatter.write_dl(rows)

    return VitrineGroup


def _sectioned() -> set[str]:
    return {name for _, names in SECTIONS for name in names}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    import faust  # noqa: PLC0415

    try:
        mine = version("vitrine")
    except PackageNotFoundError:  # run from a checkout
        mine = "(not installed)"
    click.echo(f"vitrine {mine} (Faust {faust.__version__})")
    ctx.exit()


def build_cli() -> click.Group:
    """The ``vitrine`` group: vitrine's commands, Faust's worker, Faust's other commands hidden."""
    from faust.cli.faust import cli as faust_cli  # noqa: PLC0415

    params = [p for p in faust_cli.params if p.name != "version"]
    for i, p in enumerate(params):
        if isinstance(p, click.Option) and p.name == "app":  # vitrine's app is its own
            params[i] = hidden = copy.copy(p)
            hidden.hidden = True
    params.append(
        click.Option(
            ["--version"], is_flag=True, expose_value=False, is_eager=True,
            callback=_print_version, help="Show the version and exit.",
        )
    )  # fmt: skip
    group = _group_class()(name="vitrine", help=HELP, params=params, callback=faust_cli.callback)
    for name, faust_cmd in faust_cli.commands.items():
        cmd = copy.copy(faust_cmd)
        # Still runnable (`vitrine tables`), but about Faust, not vitrine.
        cmd.hidden = name != "worker"
        group.add_command(cmd, name)
    for cmd in (
        stack_command,
        demo_command,
        simulate_command,
        predict_command,
        bench_command,
        report_command,
        rebuild_command,
        recommend_command,
        evaluate_recs_command,
        evaluate_duplicates_command,
        export_model_command,
        corrections_group,
        console_command,
    ):
        group.add_command(cmd)
    _add_training_commands(group)
    return group


def main() -> None:
    """Entry point of the ``vitrine`` console script."""
    from streams.worker.app import create_app  # noqa: PLC0415

    group = build_cli()
    _default_worker_loglevel()
    app = create_app()
    # What faust.App.main() does, with vitrine's group in place of Faust's; minus
    # autodiscovery, which vitrine leaves off (its agents are declared in app.py).
    app.finalize()
    app.worker_init()
    app.worker_init_post_autodiscover()
    group(app=app)


def _default_worker_loglevel() -> None:
    """``vitrine worker`` logs at VITRINE_LOG_LEVEL unless ``-l``/``--loglevel`` is given."""
    argv = sys.argv
    if "worker" not in argv or any(
        a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in argv
    ):
        return
    from streams.settings import get_settings  # noqa: PLC0415

    level = get_settings().log_level.lower()
    level = {"warning": "warn", "critical": "crit"}.get(level, level)
    argv.insert(argv.index("worker") + 1, f"--loglevel={level}")


if __name__ == "__main__":
    main()
