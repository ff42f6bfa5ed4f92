"""``vitrine bench soak``: a worker at half capacity for minutes; memory, latency and lag over time.

A worker process runs on topics of its own. The soak first measures what the
worker sustains on new images (a burst of unique listings), then publishes
listings at half that rate (each a new image, so every one is inferred, with
one in four a repeat that the cache answers) and orders at twenty times that
rate, for ``--minutes``. Every ``--interval`` seconds it records the worker's
resident memory (``VmRSS`` from ``/proc``), the end-to-end latency of the
labels that came out in the interval (label record time minus the listing's
publish time), and the consumer lag the worker reports. The result is a JSON
file and a PNG of the three over time; the headline is RSS growth from the
end of warm-up to the end of the run.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streams.settings import Settings, get_settings
from streams.tools.bench.pipeline import BenchRun, unique_images
from streams.tools.kafka_clients import create_topics, end_offsets
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess

__all__ = ["Sample", "SoakResult", "bench_soak_command"]

_WARMUP_S = 60.0


@dataclass
class Sample:
    """One interval of the soak."""

    t_s: float
    rss_mb: float
    labels: int
    p50_ms: float | None
    p99_ms: float | None
    lag: float


@dataclass
class SoakResult:
    """The whole soak: its rates, samples and the RSS growth after warm-up."""

    minutes: float
    capacity_per_s: float
    images_per_s: float
    orders_per_s: float
    samples: list[Sample] = field(default_factory=list)

    @property
    def rss_growth(self) -> float | None:
        """RSS at the end over RSS at the end of warm-up, minus one."""
        warm = [s for s in self.samples if s.t_s >= _WARMUP_S]
        if len(warm) < 2 or warm[0].rss_mb <= 0:
            return None
        return warm[-1].rss_mb / warm[0].rss_mb - 1

    def to_json(self) -> dict[str, Any]:
        """JSON-able figures."""
        lat = [s.p99_ms for s in self.samples if s.p99_ms is not None]
        return {
            **{k: v for k, v in asdict(self).items() if k != "samples"},
            "rss_growth_after_warmup": self.rss_growth,
            "p99_ms_worst_interval": max(lat) if lat else None,
            "samples": [asdict(s) for s in self.samples],
        }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pid(worker: WorkerProcess) -> int:
    assert worker.proc is not None, "the worker is not started"
    return worker.proc.pid


def _lag(worker: WorkerProcess) -> float:
    total = 0.0
    for line in worker.metrics().splitlines():
        if line.startswith("vitrine_consumer_lag{"):
            total += float(line.split()[-1])
    return total


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 1)


class _Soak:
    def __init__(self, settings: Settings, minutes: float, interval_s: float) -> None:
        self.b = BenchRun(settings, n_images=256)
        self.minutes = minutes
        self.interval_s = interval_s
        self.labels_topic = self.b.topics["product_labels"]
        self.sent_at: dict[str, float] = {}

    def capacity(self, n: int = 256) -> float:
        """Labels per second the worker sustains on a burst of ``n`` new images."""
        b = self.b
        start = end_offsets(b.consumer, self.labels_topic)
        t0 = time.monotonic()
        for i, img in enumerate(unique_images(b.photos, n, f"{b.run}-cap")):
            key, value = b.listing(i, img, "cap")
            b.producer.send(b.topics["product_images"], key=key, value=value)
        b.producer.flush()
        b.consumer.assign(list(start))
        for tp, off in start.items():
            b.consumer.seek(tp, off)
        got = 0
        while got < n and time.monotonic() - t0 < 300:
            got += sum(len(r) for r in b.consumer.poll(timeout_ms=500).values())
        return got / (time.monotonic() - t0)

    def run(self, worker: WorkerProcess, rate: float) -> SoakResult:
        b = self.b
        result = SoakResult(self.minutes, 0.0, rate, rate * 20)
        images = unique_images(b.photos, 10**9, f"{b.run}-soak")
        orders = iter(b.orders(int(rate * 20 * self.minutes * 60) + 100, "soak"))
        start = end_offsets(b.consumer, self.labels_topic)
        b.consumer.assign(list(start))
        for tp, off in start.items():
            b.consumer.seek(tp, off)
        t0 = time.monotonic()
        next_sample, sent, last = t0 + self.interval_s, 0, b""
        latencies: list[float] = []
        while (now := time.monotonic()) - t0 < self.minutes * 60:
            due = int((now - t0) * rate)
            while sent < due:
                # Every fourth listing reuses the previous image: a cache hit.
                last = last if sent % 4 == 3 and last else next(images)
                self._send(sent, last, orders)
                sent += 1
            b.producer.flush()
            for recs in b.consumer.poll(timeout_ms=50).values():
                latencies += [self._latency_ms(r) for r in recs]
            if now >= next_sample:
                result.samples.append(self._sample(worker, now - t0, latencies))
                latencies, next_sample = [], next_sample + self.interval_s
        return result

    def _send(self, i: int, image: bytes, orders: Any) -> None:
        b = self.b
        key, value = b.listing(i, image, "soak")
        self.sent_at[f"{b.run}-soak-{i}"] = time.time()
        b.producer.send(b.topics["product_images"], key=key, value=value)
        for _ in range(20):
            key, value = next(orders)
            b.producer.send(b.topics["orders"], key=key, value=value)

    def _latency_ms(self, record: Any) -> float:
        from schemas import codec  # noqa: PLC0415

        event_id = codec.decode_product_labelled(record.value).event_id
        sent = self.sent_at.pop(event_id, None)
        return (record.timestamp / 1000 - sent) * 1000 if sent else float("nan")

    def _sample(self, worker: WorkerProcess, t_s: float, latencies: list[float]) -> Sample:
        good = [x for x in latencies if not math.isnan(x)]  # labels of the capacity burst
        return Sample(
            round(t_s, 1), round(_rss_mb(_pid(worker)), 1), len(good),
            _pct(good, 50), _pct(good, 99), _lag(worker),
        )  # fmt: skip


def _plot(result: SoakResult, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t = [s.t_s / 60 for s in result.samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(t, [s.rss_mb for s in result.samples])
    axes[0].set_ylabel("worker RSS (MiB)")
    axes[1].plot(t, [s.p50_ms for s in result.samples], label="p50")
    axes[1].plot(t, [s.p99_ms for s in result.samples], label="p99")
    axes[1].set_ylabel("label latency (ms)")
    axes[1].legend()
    axes[2].plot(t, [s.lag for s in result.samples])
    axes[2].set_ylabel("consumer lag (records)")
    axes[2].set_xlabel("minutes")
    fig.suptitle(
        f"vitrine soak: {result.images_per_s:.1f} listings/s + {result.orders_per_s:.0f} "
        f"orders/s (half of {result.capacity_per_s:.1f}/s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench_soak_command(*, minutes: float, interval_s: float, out_dir: Path) -> int:
    """Run the soak; write ``soak.json`` and ``soak.png`` under ``out_dir``; print a summary."""
    settings = get_settings()
    soak = _Soak(settings, minutes, interval_s)
    b = soak.b
    create_topics(settings, dict.fromkeys(b.topics.values(), b.partitions))
    log = settings.state_dir / f"soak-worker-{uuid.uuid4().hex[:6]}.log"
    worker = WorkerProcess(b.env(), log, web_port=free_ports(1)[0])
    print(f"soak: starting a worker (log: {log}) ...")
    worker.start(180)
    try:
        capacity = soak.capacity()
        rate = capacity / 2
        print(f"soak: capacity {capacity:.1f} labels/s; {minutes} min at {rate:.1f}/s ...")
        result = soak.run(worker, rate)
        result.capacity_per_s = round(capacity, 1)
    finally:
        worker.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps(result.to_json(), indent=2))
    _plot(result, out_dir / "soak.png")
    growth = result.rss_growth
    p99 = [s.p99_ms for s in result.samples if s.p99_ms is not None]
    print(
        f"soak: RSS {result.samples[0].rss_mb:.0f} -> {result.samples[-1].rss_mb:.0f} MiB "
        f"(growth after warm-up {growth:+.1%}), p99 median "
        f"{statistics.median(p99) if p99 else float('nan'):.0f} ms, "
        f"worst {max(p99) if p99 else float('nan'):.0f} ms; "
        f"{out_dir / 'soak.json'}, {out_dir / 'soak.png'}"
        if growth is not None
        else "soak: too short to measure growth after warm-up"
    )
    return 0
