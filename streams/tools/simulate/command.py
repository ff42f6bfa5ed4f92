"""``vitrine simulate``: publish a simulated year of orders through the real pipeline.

The listings come first: one per sample photo, inline, labelled by the worker
like any other, so that every order line finds its product's category in Redis
(the category the *model* gave, which the ground truth of
:mod:`.generator` expects to match: the default model places every
sample photo in its category). Then the orders, with their own past
``created_at``, in time order, one chunk of ``chunk_days`` at a time: the next
chunk is published once the worker has enriched the last one.

Why chunks: the order consumer reads its partitions in fetches of up to a MiB
each, a few thousand orders, so a year published at once reaches the windows
out of time order by weeks, and orders behind the newest by more than
``VITRINE_SALES_WINDOW_EXPIRES_S`` (7 days) are late by the windows' rule
(:mod:`streams.worker.windows`) and not counted. A day per chunk keeps the
disorder under a day, at about 0.1-0.2 s per chunk on these 2 cores.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from tqdm import tqdm

from inference.samples import SAMPLES_DIR
from schemas import codec
from schemas.records import CategorySales, OrderEvent, ProductLabelled
from streams.settings import Settings, get_settings
from streams.tools.events import make_listing
from streams.tools.kafka_clients import end_offsets, make_consumer, make_producer, read_from
from streams.tools.simulate.generator import DIMENSIONS, SimProduct, Simulation, catalogue, simulate
from streams.tools.workerproc import ensure_worker

__all__ = ["Backfill", "list_products", "publish_history", "run_simulate", "settled_windows"]


@dataclass
class Backfill:
    """What a back-fill published and got back."""

    published: int
    enriched: int
    dead_lettered: int
    seconds: float


def list_products(
    settings: Settings, products: list[SimProduct], *, timeout_s: float
) -> dict[str, ProductLabelled]:
    """Publish one inline listing per product and wait for its label; product_id -> label."""
    photos = {p.class_name: SAMPLES_DIR / f"{p.class_name}_001.jpg" for p in products}
    producer = make_producer(settings)
    consumer = make_consumer(settings)
    try:
        start = end_offsets(consumer, settings.topics.product_labels)
        for p in products:
            ev = make_listing(
                p.product_id,
                image=photos[p.class_name].read_bytes(),
                event_id=f"{p.product_id}-v1",
                title=p.class_name.replace("-", " "),
            )
            producer.send(
                settings.topics.product_images, key=p.product_id.encode(), value=codec.encode(ev)
            )
        producer.flush()
        wanted = {p.product_id for p in products}
        labels: dict[str, ProductLabelled] = {}

        def done(records: list[Any]) -> bool:
            for r in records:
                if r.key and r.key.decode() in wanted:
                    labels[r.key.decode()] = codec.decode_product_labelled(r.value)
            return len(labels) == len(wanted)

        read_from(consumer, start, done=done, timeout_s=timeout_s)
    finally:
        producer.close()
        consumer.close()
    if len(labels) < len(products):
        missing = sorted({p.product_id for p in products} - set(labels))
        raise TimeoutError(f"no label within {timeout_s} s for {len(missing)} listings: {missing}")
    return labels


def _chunks(sim: Simulation, chunk_days: int) -> list[list[OrderEvent]]:
    chunks: dict[int, list[OrderEvent]] = defaultdict(list)
    for o in sim.orders:
        chunks[(o.created_at - sim.start).days // chunk_days].append(o)
    return [chunks[k] for k in sorted(chunks)]


def _assigned(consumer: KafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    consumer.assign(list(offsets))
    for tp, off in offsets.items():
        consumer.seek(tp, off)


def _await_outputs(
    consumer: KafkaConsumer, seen: dict[str, set[str]], ours: set[str], want: int, timeout_s: float
) -> None:
    """Poll until ``want`` of our orders are on the output topics (order ids in ``seen``)."""
    deadline = time.monotonic() + timeout_s
    while sum(map(len, seen.values())) < want:
        if time.monotonic() > deadline:
            missing = want - sum(map(len, seen.values()))
            raise TimeoutError(
                f"{missing} of {want} orders not back on {' or '.join(seen)} within "
                f"{timeout_s} s; is a worker running?"
            )
        for recs in consumer.poll(timeout_ms=100).values():
            for r in recs:
                key = r.key.decode() if r.key else ""
                if key in ours:
                    seen[r.topic].add(key)


def publish_history(
    settings: Settings,
    sim: Simulation,
    *,
    chunk_days: int = 1,
    chunk_timeout_s: float = 60.0,
    progress: bool = True,
) -> Backfill:
    """Publish ``sim``'s orders in time order, a chunk at a time, each once enriched."""
    producer = make_producer(settings)
    consumer = make_consumer(settings)
    outputs = (settings.topics.orders_enriched, settings.topics.orders_dlq)
    seen: dict[str, set[str]] = {topic: set() for topic in outputs}
    ours = {o.order_id for o in sim.orders}
    started = time.monotonic()
    published = 0
    try:
        _assigned(consumer, {tp: n for t in outputs for tp, n in end_offsets(consumer, t).items()})
        chunks = _chunks(sim, chunk_days)
        for chunk in tqdm(chunks, desc="days", unit="chunk", disable=not progress):
            for o in chunk:
                producer.send(
                    settings.topics.orders, key=o.order_id.encode(), value=codec.encode(o)
                )
            producer.flush()
            published += len(chunk)
            _await_outputs(consumer, seen, ours, published, chunk_timeout_s)
    finally:
        producer.close()
        consumer.close()
    return Backfill(
        published=published,
        enriched=len(seen[settings.topics.orders_enriched]),
        dead_lettered=len(seen[settings.topics.orders_dlq]),
        seconds=time.monotonic() - started,
    )


def settled_windows(
    settings: Settings, sim: Simulation, *, timeout_s: float, quiet_s: float = 3.0
) -> list[CategorySales]:
    """The latest update of every category-sales window in the simulation's span.

    Read until the windows' revenue adds up to the simulation's and no update came
    for ``quiet_s`` (the worker emits changed windows once a second).
    """
    consumer = make_consumer(settings)
    regions = {o.region for o in sim.orders}
    lo, hi = sim.start, sim.start + timedelta(days=sim.days)
    truth = round(sum(sim.revenue_by("region").values()), 2)
    latest: dict[tuple[str, str, datetime], CategorySales] = {}
    try:
        start = dict.fromkeys(end_offsets(consumer, settings.topics.category_sales), 0)
        _assigned(consumer, start)
        deadline = time.monotonic() + timeout_s
        last_update = time.monotonic()
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                for r in recs:
                    w = codec.decode_category_sales(r.value)
                    if w.region in regions and lo <= w.window_start < hi:
                        latest[(w.category, w.region, w.window_start)] = w
                        last_update = time.monotonic()
            # Each window's revenue is rounded (to 4 places), the truth to 2: a cent a
            # window of slack, or a year's windows would never seem to add up.
            total = sum(w.revenue for w in latest.values())
            if total >= truth - 0.01 * len(latest) and time.monotonic() - last_update >= quiet_s:
                break
    finally:
        consumer.close()
    return list(latest.values())


def _print_truth(sim: Simulation) -> None:
    for by in DIMENSIONS:
        rev = sim.revenue_by(by)
        total = sum(rev.values())
        ranked = ", ".join(f"{k} {rev[k]:,.0f} ({rev[k] / total:.0%})" for k in sim.ranking(by))
        print(f"  by {by}: {ranked}")


def run_simulate(
    *,
    days: int,
    orders_per_day: float,
    seed: int,
    start: datetime | None,
    start_worker: bool,
    timeout_s: float,
    truth_path: Path | None,
) -> int:
    """``vitrine simulate``: list the products, back-fill the orders, print the truth."""
    settings = get_settings()
    tag = uuid.uuid4().hex[:6]
    first = start or (datetime.now(UTC) - timedelta(days=days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    sim = simulate(
        catalogue(tag), start=first, days=days, orders_per_day=orders_per_day, seed=seed, tag=tag
    )
    print(
        f"simulated {len(sim.orders):,} orders over {days} days from {first.date()} "
        f"in {len({o.region for o in sim.orders})} regions, {len(sim.products)} products "
        f"(run {tag})"
    )
    with ensure_worker(
        settings, start=start_worker, timeout_s=timeout_s, log_name="simulate-worker.log"
    ):
        labels = list_products(settings, sim.products, timeout_s=timeout_s)
        wrong = [p.product_id for p in sim.products if labels[p.product_id].category != p.category]
        print(f"{len(labels)} products listed and labelled ({len(wrong)} in another category)")
        done = publish_history(settings, sim)
        print(
            f"{done.published:,} orders published in time order in {done.seconds:.1f} s: "
            f"{done.enriched:,} enriched, {done.dead_lettered} dead-lettered"
        )
        windows = settled_windows(settings, sim, timeout_s=timeout_s)
    print(f"{len(windows):,} category-sales windows hold them. Ground truth (EUR):")
    _print_truth(sim)
    if truth_path is not None:
        truth = {by: sim.revenue_by(by) for by in DIMENSIONS}
        run = {"run": tag, "start": first.isoformat(), "days": days, "revenue_eur": truth}
        truth_path.write_text(json.dumps(run, indent=2))
        print(f"ground truth written to {truth_path}")
    print("now run `vitrine report --out report/` to see them ranked")
    ok = done.enriched == done.published and not wrong
    return 0 if ok else 1
