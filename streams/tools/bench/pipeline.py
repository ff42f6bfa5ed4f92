"""``vitrine bench pipeline``: the worker end to end, beside its ceiling and a naive baseline.

In one run, with the same images on the same machine and the local stack up,
it measures the engine alone (the ceiling), a real ``vitrine worker`` labelling
new and cached listings and enriching orders, a naive one-message-at-a-time
consumer, and optionally several worker processes. The ceiling, the pipeline
and the baseline take turns within each trial so that a shared machine's load
hits them alike. The phases and the latest figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import re
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from schemas import codec
from streams.settings import Settings, get_settings
from streams.tools.events import make_listing, make_order, sample_photos
from streams.tools.kafka_clients import (
    create_topics,
    end_offsets,
    make_consumer,
    make_producer,
    read_from,
)
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess, isolated_env, isolated_topics, security_env

__all__ = ["Phase", "bench_pipeline_command", "run_pipeline_bench", "unique_images"]

logger = logging.getLogger(__name__)


def unique_images(photos: Sequence[bytes], n: int, tag: str) -> Iterator[bytes]:
    """``n`` images cycling through ``photos``, each with distinct bytes (trailer after EOI)."""
    for i in range(n):
        yield photos[i % len(photos)] + f"vitrine-bench-{tag}-{i}".encode()


@dataclass
class Phase:
    """Throughput and latency of one phase."""

    name: str
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able figures."""
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1)

        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.per_s, 1),
            "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                           "mean": round(statistics.fmean(lat), 1) if lat else None},
        }  # fmt: skip


class BenchRun:
    """One benchmark run's topics, sample photos, clients and event builders."""

    def __init__(self, settings: Settings, n_images: int) -> None:
        self.settings = settings
        self.n = n_images
        self.run = uuid.uuid4().hex[:8]
        self.partitions = settings.topics.partitions
        self.topics = isolated_topics(f"bench-{self.run}")
        self.photos = [p.read_bytes() for p, _ in sample_photos()]
        self.producer = self._new_producer()
        self.consumer = make_consumer(settings)
        self.orders_live: list[tuple[bytes, bytes]] = []
        #: Photos of listings by reference (removed at the end of the run).
        self.images_dir = settings.state_dir / f"bench-{self.run}-images"

    def _new_producer(self) -> Any:
        """The bench's producer: large batches, a short linger (publishing is not timed)."""
        return make_producer(self.settings, linger_ms=20, batch_size=1 << 20)

    def env(self) -> dict[str, str]:
        return isolated_env(
            bootstrap=self.settings.kafka.bootstrap_servers,
            redis_url=self.settings.redis.url,
            tag=f"bench-{self.run}",
            partitions=self.partitions,
            topics=self.topics,
            VITRINE_MAX_BATCH_SIZE=str(self.settings.model.max_batch_size),
            VITRINE_MAX_BATCH_LATENCY_MS=str(self.settings.model.max_batch_latency_ms),
            # The worker serves the graph the engine-alone phase measures.
            VITRINE_PRECISION=self.settings.model.precision,
            # Under the default prefix, so that a Redis ACL that grants vitrine*
            # keys (the secured stack's) lets the bench's worker keep its views.
            VITRINE_REDIS_KEY_PREFIX=f"vitrine-bench-{self.run}",
            VITRINE_REDIS_CLUSTER=str(self.settings.redis.cluster).lower(),
            # Listings by reference: files under images_dir, or the bench's own
            # HTTP server on loopback (allow-listed, as an internal image store).
            VITRINE_IMAGE_FILE_ROOT=str(self.images_dir),
            VITRINE_IMAGE_FETCH_ALLOWED_HOSTS="127.0.0.1",
            VITRINE_IMAGE_FETCH_ALLOW_PRIVATE_ADDRESSES="true",
            **security_env(self.settings),
        )

    def publish(self, topic: str, msgs: Sequence[tuple[bytes, bytes]]) -> None:
        """Write ``msgs`` to ``topic`` and confirm every one, or raise.

        A record the producer gave up on (its future failed) is sent again by a
        new producer, twice at most: a benchmark that waited for the outputs of
        records never written would wait for its whole deadline.
        """
        pending = list(msgs)
        for attempt in range(3):
            futures = [self.producer.send(topic, key=k, value=v) for k, v in pending]
            self.producer.flush()
            failed = [(m, f.exception) for m, f in zip(pending, futures, strict=True) if f.failed()]
            if not failed:
                return
            logger.warning("%d of %d records to %s not written (%s), attempt %d",
                           len(failed), len(pending), topic, failed[0][1], attempt + 1)  # fmt: skip
            self.producer.close(timeout=5)
            self.producer = self._new_producer()
            pending = [m for m, _ in failed]
        raise RuntimeError(f"{len(pending)} records could not be written to {topic}")

    def listing(
        self, i: int, image: bytes, tag: str, *, uri_base: str | None = None
    ) -> tuple[bytes, bytes]:
        """A new listing's key and value: ``image`` inline, or by reference.

        With ``uri_base``, the image is written under :attr:`images_dir` and the
        listing carries ``{uri_base}/{file name}`` as its ``image_uri``.
        """
        pid = f"p-{tag}-{i}"
        event_id = f"{self.run}-{tag}-{i}"
        if uri_base is None:
            ev = make_listing(pid, image=image, event_id=event_id)
        else:
            path = self.images_dir / f"{tag}-{i}.jpg"
            path.write_bytes(image)
            ev = make_listing(pid, uri=f"{uri_base}/{path.name}", event_id=event_id)
        return pid.encode(), codec.encode(ev)

    def orders(self, n: int, tag: str) -> list[tuple[bytes, bytes]]:
        """``n`` orders of 1-4 lines over the products labelled in the first misses trial."""
        rng = random.Random(7)
        products = [f"p-miss0-{i}" for i in range(self.n)]
        now = datetime.now(UTC)
        msgs = []
        for i in range(n):
            lines = [
                (rng.choice(products), rng.randint(1, 3), round(rng.uniform(1, 20), 2))
                for _ in range(rng.randint(1, 4))
            ]
            order = make_order(
                f"o-{tag}-{i}", lines, region=("eu-north", "eu-west", "us-east")[i % 3],
                created_at=now, event_id=f"{self.run}-o-{tag}-{i}",
            )  # fmt: skip
            msgs.append((order.order_id.encode(), codec.encode(order)))
        return msgs

    def engine_alone(self, images: list[bytes], *, fingerprints: bool = False) -> Phase:
        """``predict_bytes`` in batches; with ``fingerprints``, the worker's model stage.

        The worker's stage (``predict_with_fingerprints``) also asks for the
        embeddings and fingerprints each photo for the integrity checks.
        """
        from inference.serving.engine import predict_with_fingerprints  # noqa: PLC0415
        from streams.worker.model import build_engine, image_limits  # noqa: PLC0415

        if not hasattr(self, "engine"):
            self.engine = build_engine(self.settings)
        engine = self.engine
        limits = image_limits(self.settings)
        size = self.settings.model.max_batch_size

        def stage(batch: list[bytes]) -> object:
            if fingerprints:
                return predict_with_fingerprints(engine, batch, limits)
            return engine.predict_bytes(batch, limits)

        stage(images[:size])  # warm
        t0 = time.perf_counter()
        for i in range(0, len(images), size):
            stage(images[i : i + size])
        name = "engine + fingerprints" if fingerprints else "engine alone"
        return Phase(name, len(images), time.perf_counter() - t0, [])

    def naive(self, images: list[bytes], tag: str, *, fingerprints: bool = False) -> Phase:
        """One message at a time: poll 1, decode, infer, produce and flush, repeat.

        With ``fingerprints``, the inference is the worker's model stage
        (embeddings and fingerprints too), so the baseline does the same work per
        photo as the pipeline it is compared with.
        """
        from inference.serving.engine import predict_with_fingerprints  # noqa: PLC0415
        from streams.worker.model import image_limits  # noqa: PLC0415

        limits = image_limits(self.settings)
        src = f"bench-{self.run}-{tag}-in"
        dst = f"bench-{self.run}-{tag}-out"
        create_topics(self.settings, {src: self.partitions, dst: 1})
        self.publish(src, [self.listing(i, img, tag) for i, img in enumerate(images)])
        consumer = make_consumer(self.settings, max_poll_records=1)
        offsets = dict.fromkeys(end_offsets(consumer, src), 0)
        consumer.assign(list(offsets))
        for tp in offsets:
            consumer.seek(tp, 0)
        done = 0
        t0 = time.perf_counter()
        while done < len(images):
            for recs in consumer.poll(timeout_ms=500, max_records=1).values():
                for rec in recs:
                    ev = codec.decode_product_image(rec.value)
                    blob = codec.decode_inline_image(ev)
                    if fingerprints:
                        batch, _ = predict_with_fingerprints(self.engine, [blob], limits)
                    else:
                        batch = self.engine.predict_bytes([blob], limits)
                    res = batch.items[0]
                    value = json.dumps(
                        {"event_id": ev.event_id, "category": getattr(res, "category", None)}
                    ).encode()
                    self.producer.send(dst, key=rec.key, value=value)
                    self.producer.flush()
                    done += 1
        consumer.close()
        name = "naive, worker's model stage" if fingerprints else "naive baseline"
        return Phase(name, done, time.perf_counter() - t0, [])


def _latencies(records: list[Any], sent_ms: dict[bytes, float]) -> list[float]:
    return [r.timestamp - sent_ms[r.key] for r in records if r.key in sent_ms]


def _pooled(name: str, phases: Sequence[Phase]) -> Phase:
    """One phase from several trials: all their events over all their time."""
    return Phase(
        name,
        sum(p.events for p in phases),
        sum(p.seconds for p in phases),
        [ms for p in phases for ms in p.latencies_ms],
    )


def bench_pipeline_command(
    *, as_json: bool, n_images: int, trials: int = 3, workers: Sequence[int] = ()
) -> int:
    """Run every phase; print a table or one JSON object."""
    say: Callable[[str], None] = (lambda _m: None) if as_json else print
    results, phases = run_pipeline_bench(
        get_settings(), n_images=n_images, trials=trials, workers=workers, say=say
    )
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        _print_results(results, phases)
    return 0


def run_pipeline_bench(
    settings: Settings,
    *,
    n_images: int,
    trials: int,
    workers: Sequence[int] = (),
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Phase]]:
    """Every phase of the pipeline benchmark (and the scaling runs of ``workers``)."""
    b = BenchRun(settings, n_images)
    create_topics(settings, dict.fromkeys(b.topics.values(), b.partitions))
    say(f"bench pipeline: {n_images} images x {trials} trials, batch <= "
        f"{settings.model.max_batch_size}, latency <= {settings.model.max_batch_latency_ms} ms, "
        f"{b.partitions} partitions")  # fmt: skip
    log = settings.state_dir / f"bench-worker-{b.run}.log"
    worker = WorkerProcess(b.env(), log, web_port=free_ports(1)[0])
    say(f"starting a worker (log: {log}) ...")
    worker.start(180)
    per_trial: list[dict[str, Phase]] = []
    extra: list[Phase] = []
    try:
        per_trial = _side_by_side(b, trials, say)
        extra = _extra_phases(b, per_trial, trials, say)
        worker.stop()
        listings, orders = _backlogs(b, log, say)
        extra[1:1] = listings  # after the cache hits
        extra.append(orders)
    finally:
        worker.stop()
        shutil.rmtree(b.images_dir, ignore_errors=True)
    results, phases = _summarise(b, n_images, trials, per_trial, extra)
    if workers:
        results["scaling"] = _scaling(b, workers, log, say)
    return results, phases


def _backlogs(b: BenchRun, log: Path, say: Callable[[str], None]) -> tuple[list[Phase], Phase]:
    """Backlogs drained by a restarted worker: listings inline, by file:// and http://; orders.

    The same number of new photos each time; by reference, the photo is a file
    under the worker's ``VITRINE_IMAGE_FILE_ROOT`` or served by a local HTTP
    server in this process (allow-listed), as an object store would serve it.
    """
    size = b.settings.model.max_batch_size
    listings = []
    with _image_host(b.images_dir) as http_base:
        bases = {"inline": None, "file": f"file://{b.images_dir}", "http": http_base}
        for how, base in bases.items():
            say(f"images, backlog ({2 * b.n} new, {how}, drained by a restarted worker) ...")
            images = unique_images(b.photos, 2 * b.n, f"{b.run}-backlog-{how}")
            tag = "backlog" if base is None else f"backlog-{how}"
            msgs = [b.listing(i, img, tag, uri_base=base) for i, img in enumerate(images)]
            name = "pipeline backlog" if base is None else f"pipeline backlog, {how}://"
            worker = WorkerProcess(b.env(), log, web_port=free_ports(1)[0])
            listings.append(
                _drained(b, name, msgs, worker, "product_images", "product_labels", size)
            )
    say(f"orders, backlog ({2 * len(b.orders_live)}, drained by a restarted worker) ...")
    msgs = b.orders(2 * len(b.orders_live), "backlog")
    worker = WorkerProcess(b.env(), log, web_port=free_ports(1)[0])
    orders = _drained(b, "orders backlog", msgs, worker, "orders", "orders_enriched",
                      b.settings.orders.max_batch_size)  # fmt: skip
    return listings, orders


class _QuietFiles(SimpleHTTPRequestHandler):
    """Static files over keep-alive HTTP/1.1, without a log line per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _image_host(root: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for the files under ``root``; yields its base URL."""
    root.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, name="bench-images", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _side_by_side(b: BenchRun, trials: int, say: Callable[[str], None]) -> list[dict[str, Phase]]:
    """Engine alone, pipeline and naive baseline, trial after trial.

    So that a change of load on a shared machine hits all three.
    """
    tin, tout = b.topics["product_images"], b.topics["product_labels"]
    per_trial = []
    for t in range(trials):
        images = list(unique_images(b.photos, b.n, f"{b.run}-miss{t}"))
        say(f"trial {t + 1}/{trials}: engine alone, pipeline misses, naive baseline ...")
        engine = b.engine_alone(images)
        engine_fp = b.engine_alone(images, fingerprints=True)
        msgs = [b.listing(i, img, f"miss{t}") for i, img in enumerate(images)]
        misses = _timed(b, "pipeline misses", msgs, tin, tout)
        naive = b.naive(images, f"naive{t}")
        naive_fp = b.naive(images, f"naivefp{t}", fingerprints=True)
        per_trial.append({"engine": engine, "engine_fp": engine_fp, "pipeline": misses,
                          "naive": naive, "naive_fp": naive_fp})  # fmt: skip
    return per_trial


def _extra_phases(
    b: BenchRun, per_trial: list[dict[str, Phase]], trials: int, say: Callable[[str], None]
) -> list[Phase]:
    """Cache hits, half rate, orders live."""
    tin, tout = b.topics["product_images"], b.topics["product_labels"]
    extra = []
    say("pipeline cache hits (every trial's images again) ...")
    seen = [img for t in range(trials) for img in unique_images(b.photos, b.n, f"{b.run}-miss{t}")]
    hits = [b.listing(i, img, "hit") for i, img in enumerate(seen)]
    extra.append(_timed(b, "pipeline cache hits", hits, tin, tout))
    half = statistics.median(tr["pipeline"].per_s for tr in per_trial) / 2
    paced_n = max(32, min(b.n, int(half * 20)))
    paced_imgs = list(unique_images(b.photos, paced_n, f"{b.run}-paced"))
    say(f"pipeline at half rate ({half:.1f}/s, {paced_n} images) ...")
    extra.append(
        _timed(b, "pipeline half rate",
               [b.listing(i, img, "paced") for i, img in enumerate(paced_imgs)],
               tin, tout, pace_per_s=half)
    )  # fmt: skip
    b.orders_live = b.orders(max(2000, b.n * 20), "live")
    say(f"orders, live ({len(b.orders_live)}) ...")
    extra.append(_timed(b, "orders live", b.orders_live,
                        b.topics["orders"], b.topics["orders_enriched"]))  # fmt: skip
    return extra


def _scaling(
    b: BenchRun, counts: Sequence[int], log: Path, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Backlogs drained by 1, 2, ... worker processes, each pinned to a core of its own.

    Each worker runs on one core (CPU affinity, set before it starts) with one
    inference thread, so that n workers on n cores show how the worker scales
    with cores, not how it shares them. Per count: a backlog of new listings is
    published with no worker up, then drained by the n workers started together,
    and the same for orders. Rates are over the steady part of the drain
    (:func:`_steady`), leaving out the start (group joins) and the tail (one
    worker done before another). The broker, Redis and this process are not
    pinned: on a machine with as many cores as workers they share them.
    """
    usable = sorted(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    for n in counts:
        cores = [usable[k % len(usable)] for k in range(n)]
        row: dict[str, Any] = {"workers": n, "cores": cores}
        listings = unique_images(b.photos, 2 * b.n, f"{b.run}-scale{n}")
        backlogs = {
            "listings": ([b.listing(i, im, f"scale{n}") for i, im in enumerate(listings)],
                         "product_images", "product_labels"),
            # Orders are 50-100x cheaper than listings: a longer backlog, so
            # that the drain lasts long enough to time after the group forms.
            "orders": (b.orders(6 * len(b.orders_live), f"scale{n}"), "orders",
                       "orders_enriched"),
        }  # fmt: skip
        for kind, (msgs, source, sink) in backlogs.items():
            say(f"scaling: {len(msgs)} {kind} drained by {n} worker(s) on cores {cores} ...")
            procs = [
                WorkerProcess(b.env() | {"VITRINE_INTRA_OP_THREADS": "1"},
                              log.with_name(f"{log.stem}-x{n}-{k}.log"),
                              web_port=free_ports(1)[0], cpus=frozenset({core}))
                for k, core in enumerate(cores)
            ]  # fmt: skip
            cpu: list[CpuSample] = []
            stamps = sorted(_drain(b, f"{n} pinned worker(s), {kind}", msgs, procs, source, sink,
                                   cpu))  # fmt: skip
            steady = _steady(f"{n} pinned worker(s), {kind}", stamps)
            lo, hi = _steady_bounds(len(stamps))
            use = _cpu_use(cpu, stamps[lo], stamps[hi])
            row[kind] = steady.summary() | {"cpu": use}
            if use.get("workers_cpu_s"):
                # What the workers did per second of their own CPU time.
                row[kind]["per_worker_cpu_s"] = round(
                    steady.per_s * use["seconds"] / use["workers_cpu_s"], 1
                )
        rows.append(row)
    for kind in ("listings", "orders"):
        first = rows[0][kind]["per_s"] if rows else 0
        for row in rows:
            row[kind]["vs_first"] = round(row[kind]["per_s"] / first, 3) if first else None
    return rows


def _steady(name: str, stamps_ms: Sequence[int]) -> Phase:
    """The rate between the 10th and the 90th percentile of the output timestamps."""
    stamps = sorted(stamps_ms)
    lo, hi = _steady_bounds(len(stamps))
    return Phase(name, hi - lo, (stamps[hi] - stamps[lo]) / 1000, [])


def _steady_bounds(n: int) -> tuple[int, int]:
    return n // 10, n - 1 - n // 10


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by some processes and by the whole machine, at a moment."""

    at_ms: float
    processes_s: float
    machine_s: float

    @classmethod
    def now(cls, pids: Sequence[int]) -> CpuSample:
        """Read ``/proc`` (Linux): user + system time of ``pids`` (all their threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        procs = 0
        for pid in pids:
            with contextlib.suppress(OSError):  # exited
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                procs += int(fields[11]) + int(fields[12])  # utime, stime
        # user nice system idle iowait irq softirq steal: busy is all but idle, iowait, steal.
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]
        return cls(time.time() * 1000, procs / tick, busy / tick)


def _cpu_use(samples: Sequence[CpuSample], from_ms: float, to_ms: float) -> dict[str, float]:
    """CPU seconds of the workers and of everything else between two moments (nearest samples)."""
    if len(samples) < 2:
        return {}
    a = min(samples, key=lambda c: abs(c.at_ms - from_ms))
    z = min(samples, key=lambda c: abs(c.at_ms - to_ms))
    if z.at_ms <= a.at_ms:
        return {}
    workers, machine = z.processes_s - a.processes_s, z.machine_s - a.machine_s
    return {
        "seconds": round((z.at_ms - a.at_ms) / 1000, 2),
        "workers_cpu_s": round(workers, 2),
        "other_cpu_s": round(max(0.0, machine - workers), 2),
    }


def _summarise(
    b: BenchRun,
    n_images: int,
    trials: int,
    per_trial: list[dict[str, Phase]],
    extra: list[Phase],
) -> tuple[dict[str, Any], list[Phase]]:
    """The run's figures: phases pooled over trials, per-trial figures, median ratios."""
    settings = b.settings
    pooled = {k: _pooled(per_trial[0][k].name, [tr[k] for tr in per_trial]) for k in per_trial[0]}
    phases = [pooled["engine"], pooled["engine_fp"], pooled["pipeline"], *extra,
              pooled["naive"], pooled["naive_fp"]]  # fmt: skip
    results: dict[str, Any] = {
        "provider": b.engine.provider, "device": b.engine.device,
        "model": f"{b.engine.model_name}:{b.engine.model_version}",
        "precision": b.engine.precision,
        "images": n_images, "trials": trials, "max_batch_size": settings.model.max_batch_size,
        "max_batch_latency_ms": settings.model.max_batch_latency_ms, "partitions": b.partitions,
        "cpu_count": os.cpu_count(),
    }  # fmt: skip
    results["phases"] = {p.name: p.summary() for p in phases}
    results["per_trial"] = [
        {k: round(p.per_s, 1) for k, p in tr.items()}
        | {"pipeline_vs_engine": round(tr["pipeline"].per_s / tr["engine"].per_s, 3),
           "pipeline_vs_engine_fingerprints": round(
               tr["pipeline"].per_s / tr["engine_fp"].per_s, 3),
           "pipeline_vs_naive": round(tr["pipeline"].per_s / tr["naive"].per_s, 3),
           "pipeline_vs_naive_model_stage": round(
               tr["pipeline"].per_s / tr["naive_fp"].per_s, 3)}
        for tr in per_trial
    ]  # fmt: skip
    miss, hits_per_s = pooled["pipeline"].per_s, extra[0].per_s
    backlog = next(p for p in extra if p.name == "pipeline backlog")
    results["ratios"] = {
        # Medians over the trials of each trial's own ratio.
        "pipeline_vs_engine": statistics.median(
            tr["pipeline_vs_engine"] for tr in results["per_trial"]
        ),
        "pipeline_vs_engine_fingerprints": statistics.median(
            tr["pipeline_vs_engine_fingerprints"] for tr in results["per_trial"]
        ),
        "pipeline_vs_naive": statistics.median(
            tr["pipeline_vs_naive"] for tr in results["per_trial"]
        ),
        "pipeline_vs_naive_model_stage": statistics.median(
            tr["pipeline_vs_naive_model_stage"] for tr in results["per_trial"]
        ),
        "cache_hits_vs_misses": round(hits_per_s / miss, 2) if miss else None,
        # The worker draining a backlog (no publisher beside it) against the
        # median engine-alone rate of the trials.
        "backlog_vs_engine": round(
            backlog.per_s / statistics.median(tr["engine"].per_s for tr in per_trial), 3
        ),
        "backlog_vs_engine_fingerprints": round(
            backlog.per_s / statistics.median(tr["engine_fp"].per_s for tr in per_trial), 3
        ),
    }
    # Listings by reference against inline ones, each drained by a restarted worker.
    for how in ("file", "http"):
        by_uri = next(p for p in extra if p.name == f"pipeline backlog, {how}://")
        results["ratios"][f"{how}_uri_vs_inline"] = (
            round(by_uri.per_s / backlog.per_s, 3) if backlog.per_s else None
        )
    return results, phases


def _print_results(results: dict[str, Any], phases: list[Phase]) -> None:
    print(f"\nprovider {results['provider']} ({results['device']}), model {results['model']}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'phase':<22} {'events':>7} {'per s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for p in phases:
        summary = p.summary()
        lat = summary["latency_ms"]
        print(f"{p.name:<22} {p.events:>7} {summary['per_s']:>9.1f} "
              f"{lat['p50'] or '-':>8} {lat['p95'] or '-':>8} {lat['p99'] or '-':>8}")  # fmt: skip
    for t, tr in enumerate(results["per_trial"], 1):
        print(f"trial {t}: " + ", ".join(f"{k} {v}" for k, v in tr.items()))
    for row in results.get("scaling", []):
        print(f"scaling: {row['workers']} pinned worker(s) on cores {row['cores']}: "
              f"{row['listings']['per_s']} listings/s ({row['listings']['vs_first']}x), "
              f"{row['orders']['per_s']} orders/s ({row['orders']['vs_first']}x)")  # fmt: skip
    print("ratios (median of trials; hits vs pooled misses): "
          + ", ".join(f"{k} {v}" for k, v in results["ratios"].items()))  # fmt: skip


def _timed(
    b: BenchRun,
    name: str,
    msgs: list[tuple[bytes, bytes]],
    tin: str,
    tout: str,
    pace_per_s: float | None = None,
) -> Phase:
    """Publish ``msgs``, wait for as many outputs, latency from each send to its output."""
    start = end_offsets(b.consumer, tout)
    sent_ms: dict[bytes, float] = {}
    t0 = time.time()
    gap = 1.0 / pace_per_s if pace_per_s else 0.0
    futures = []
    for i, (key, value) in enumerate(msgs):
        if gap:
            delay = t0 + i * gap - time.time()
            if delay > 0:
                time.sleep(delay)
        sent_ms[key] = time.time() * 1000
        futures.append(b.producer.send(tin, key=key, value=value))
        if gap:
            b.producer.flush()
    b.producer.flush()
    if failed := [f.exception for f in futures if f.failed()]:
        # Timed phases are not resent (the resend would be timed too).
        raise RuntimeError(f"{name}: {len(failed)} of {len(msgs)} inputs not written: {failed[0]}")
    out = _outputs(b, name, tout, start, {key for key, _ in msgs})
    t_last = max(r.timestamp for r in out) / 1000
    return Phase(name, len(out), t_last - t0, _latencies(out, sent_ms))


#: A drain with no new output for this long is stuck: the workers' stacks are
#: logged and the phase fails (a worker on two busy cores labels a batch in
#: well under a minute).
STUCK_S = 120.0


def _stuck(name: str, got: int, n: int, workers: Sequence[WorkerProcess]) -> None:
    """Raise for a drain that stopped, with each worker's threads and tasks from its log."""
    for w in workers:
        w.dump_stacks()
    time.sleep(3)  # the dump is written by the worker's event loop
    tails = "\n".join(w.tail(600) for w in workers)
    raise RuntimeError(
        f"{name}: {got} of {n} outputs, then none for {STUCK_S:.0f} s; "
        f"the workers' stacks (SIGUSR1) and logs:\n{tails}"
    )


def _outputs(
    b: BenchRun,
    name: str,
    topic: str,
    start: dict[Any, int],
    keys: set[bytes],
    workers: Sequence[WorkerProcess] = (),
    on_poll: Callable[[], None] | None = None,
) -> list[Any]:
    """The first output of each of ``keys`` written to ``topic`` after ``start``.

    Only end offsets are polled while the worker runs: on two cores, a client
    reading along would take CPU from the worker it measures. Times and
    latencies come from the records' own timestamps, so reading afterwards
    changes neither. Records of other keys (a restarted worker re-delivering
    the end of an earlier phase) and repeats are left out, so a phase counts
    its own events only, once each.
    """
    n = len(keys)
    target = sum(start.values()) + n
    deadline = time.monotonic() + 900
    progress = (-1, time.monotonic())  # (outputs so far, since when)
    while (now_at := sum(end_offsets(b.consumer, topic).values())) < target:
        now = time.monotonic()
        if now_at != progress[0]:
            progress = (now_at, now)
        if workers and now - progress[1] > STUCK_S:
            _stuck(name, n - (target - now_at), n, workers)
        if now > deadline or not all(w.running for w in workers):
            tail = "\n".join(w.tail() for w in workers)
            raise RuntimeError(f"{name}: not all {n} outputs arrived\n{tail}")
        if on_poll is not None:
            on_poll()
        time.sleep(0.25)
    first: dict[bytes, Any] = {}
    seen = [0]  # records already looked at

    def done(records: list[Any]) -> bool:
        for r in records[seen[0] :]:
            if r.key in keys:
                first.setdefault(r.key, r)
        seen[0] = len(records)
        return len(first) == n

    records = read_from(b.consumer, start, done=done, timeout_s=120)
    if len(first) < n:
        missing = sorted(k.decode(errors="replace") for k in keys - set(first))
        others = sum(r.key not in keys for r in records)
        raise RuntimeError(
            f"{name}: only {len(first)} of {n} outputs could be read; missing "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
            f"{len(records) - others - len(first)} repeat(s), {others} output(s) of other keys"
        )
    return list(first.values())


def _drained(
    b: BenchRun,
    name: str,
    msgs: list[tuple[bytes, bytes]],
    worker: WorkerProcess,
    source: str,
    sink: str,
    first_batch: int,
) -> Phase:
    """Publish ``msgs`` with no worker up; start ``worker``; time its drain of the backlog.

    The worker's own capacity: nothing else (publisher, reader) runs meanwhile.
    """
    stamps = sorted(_drain(b, name, msgs, [worker], source, sink))
    # The first batch's outputs mark the start; count only what came after it.
    counted = len(stamps) - first_batch
    return Phase(name, counted, (stamps[-1] - stamps[0]) / 1000, [])


def _inferred(worker: WorkerProcess) -> int:
    """How many images ``worker`` ran through the model (its ``vitrine_images_inferred_total``)."""
    found = re.search(r"^vitrine_images_inferred_total (\S+)$", worker.metrics(), re.M)
    return int(float(found.group(1))) if found else 0


def _drain(
    b: BenchRun,
    name: str,
    msgs: list[tuple[bytes, bytes]],
    workers: Sequence[WorkerProcess],
    source: str,
    sink: str,
    cpu: list[CpuSample] | None = None,
) -> list[int]:
    """Publish ``msgs``, start ``workers`` together, wait for the outputs, stop the workers.

    The outputs' timestamps (ms), one per message. The workers are stopped
    whatever happens. ``cpu``: filled with samples of the CPU time used while
    the outputs came.
    """
    tin, tout = b.topics[source], b.topics[sink]
    start = end_offsets(b.consumer, tout)
    b.publish(tin, msgs)
    try:
        for worker in workers:
            worker.launch()
        for worker in workers:
            worker.wait_ready(180)
        pids = [w.proc.pid for w in workers if w.proc is not None]
        sample = None if cpu is None else (lambda: cpu.append(CpuSample.now(pids)))
        out = _outputs(b, name, tout, start, {key for key, _ in msgs}, workers, sample)
        inferred = sum(_inferred(w) for w in workers) if sink == "product_labels" else 0
    finally:
        for worker in workers:
            worker.stop()
    if sink == "product_labels" and inferred < len(msgs):
        # A backlog of cache hits would time the cache, not the model. (Not the
        # outputs' ``cached`` flag: a listing delivered twice as a worker starts,
        # which at-least-once allows, can take its result from the other copy's
        # inference while both are in flight, and come out marked cached first.)
        raise RuntimeError(f"{name}: only {inferred} of {len(msgs)} new images were inferred")
    return [r.timestamp for r in out]
