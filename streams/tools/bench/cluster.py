"""``vitrine bench cluster``: orders enriched per second on one Redis and on a Redis Cluster.

One run, same orders, same machine, with the local stack up. The single Redis
is the configured one (``VITRINE_REDIS_URL``); the cluster is the one
``VITRINE_REDIS_CLUSTER``/``VITRINE_REDIS_URL`` name when set, else a local one
of 3 masters and 3 replicas that this command starts in a temporary directory
and stops (:mod:`streams.tools.redis_cluster`).

For each Redis, a worker of its own (own topics, consumer group and keys) labels
``--images`` listings; then, in each of ``--trials`` trials and for each Redis
in turn (so that a change of load on a shared machine hits both alike), the
worker is stopped, ``--events`` orders over those products are published, and a
fresh worker drains the backlog: enriched orders per second from its first
output to its last, the first batch left out (as ``bench pipeline``'s orders
backlog). Every batch reads its products' labels (MGET), and writes its
recommendation increments (the Lua script, once per hash slot on the cluster).
The ratio is the median of the trials' own ratios.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streams.settings import Settings, get_settings
from streams.tools.bench.pipeline import BenchRun, _drained, _timed, unique_images
from streams.tools.kafka_clients import create_topics
from streams.tools.redis_cluster import RedisClusterStack
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess

__all__ = ["bench_cluster_command", "run_cluster_bench"]

BACKENDS = ("one redis", "redis cluster")


@contextlib.contextmanager
def _cluster_settings(settings: Settings, say: Callable[[str], None]) -> Iterator[Settings]:
    """The configured cluster's settings, or a local cluster's for the duration."""
    if settings.redis.cluster:
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-cluster-") as tmp:
        cluster = RedisClusterStack(Path(tmp))
        say(f"starting a local Redis Cluster (3 masters, 3 replicas) under {tmp} ...")
        try:
            cluster.up()
            redis = settings.redis.model_copy(update={"url": cluster.url, "cluster": True})
            yield settings.model_copy(update={"redis": redis})
        finally:
            cluster.down()


def run_cluster_bench(
    settings: Settings,
    *,
    n_products: int,
    n_orders: int,
    trials: int,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Orders/s on one Redis and on the cluster, trial after trial."""
    if settings.redis.cluster:
        raise SystemExit(
            "bench cluster compares one Redis (VITRINE_REDIS_URL) with a Redis Cluster it "
            "starts; unset VITRINE_REDIS_CLUSTER to name the single one"
        )
    per_s: dict[str, list[float]] = {name: [] for name in BACKENDS}
    with _cluster_settings(settings, say) as cluster_settings:
        runs = {
            "one redis": BenchRun(settings, n_products),
            "redis cluster": BenchRun(cluster_settings, n_products),
        }
        logs = {name: settings.state_dir / f"bench-cluster-{b.run}.log" for name, b in runs.items()}
        for name, b in runs.items():
            create_topics(b.settings, dict.fromkeys(b.topics.values(), b.partitions))
            say(f"{name}: labelling {n_products} products (worker log {logs[name]}) ...")
            worker = WorkerProcess(b.env(), logs[name], web_port=free_ports(1)[0])
            worker.start(180)
            try:
                images = unique_images(b.photos, n_products, f"{b.run}-products")
                listings = [b.listing(i, img, "miss0") for i, img in enumerate(images)]
                _timed(b, f"{name} labels", listings, b.topics["product_images"],
                       b.topics["product_labels"])  # fmt: skip
            finally:
                worker.stop()
        for t in range(trials):
            for name, b in runs.items():
                say(f"trial {t}: {name}, {n_orders} orders drained by a fresh worker ...")
                backlog = b.orders(n_orders, f"t{t}")
                worker = WorkerProcess(b.env(), logs[name], web_port=free_ports(1)[0])
                try:
                    first = b.settings.orders.max_batch_size
                    phase = _drained(
                        b, f"{name} orders", backlog, worker, "orders", "orders_enriched", first
                    )
                finally:
                    worker.stop()
                per_s[name].append(round(phase.per_s, 1))
    ratios = [c / o for o, c in zip(per_s["one redis"], per_s["redis cluster"], strict=True)]
    return {
        "orders": n_orders,
        "products": n_products,
        "trials": trials,
        "order_max_batch_size": settings.orders.max_batch_size,
        "orders_per_s": {name: statistics.median(v) for name, v in per_s.items()},
        "per_trial": per_s,
        "cluster_vs_one": round(statistics.median(ratios), 2),
    }


def bench_cluster_command(*, as_json: bool, n_products: int, n_orders: int, trials: int) -> int:
    """Run the comparison; print a table or one JSON object."""
    say: Callable[[str], None] = (lambda _m: None) if as_json else print
    results = run_cluster_bench(
        get_settings(), n_products=n_products, n_orders=n_orders, trials=trials, say=say
    )
    if as_json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{n_orders} orders over {n_products} products, {trials} trials, "
          f"batches <= {results['order_max_batch_size']}")  # fmt: skip
    print(f"{'redis':<14} {'orders/s (median)':>18}   per trial")
    for name in BACKENDS:
        print(f"{name:<14} {results['orders_per_s'][name]:>18.1f}   {results['per_trial'][name]}")
    print(f"cluster / one redis: {results['cluster_vs_one']}x (median of the trials' ratios)")
    return 0
