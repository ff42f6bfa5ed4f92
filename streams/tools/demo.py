"""``vitrine demo``: publish sample listings and orders, print what comes out.

With the local stack up, the demo makes sure a worker is running (it starts
one when none answers on the web port, and stops it at the end), then
publishes the shipped product photos as listings (half inline as base64,
half by ``file://`` reference), the first photo a second time under another
product id (served from the cache), and one corrupt image. Once the labels
are out it publishes orders for those products plus one for a product that
was never listed, and prints the labelled products, the enriched orders, the
category-sales windows and the dead-lettered event.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from inference.samples import SAMPLES_DIR
from schemas import codec
from schemas.deadletter import decode_headers
from schemas.records import OrderEvent, ProductImageEvent
from streams.settings import get_settings
from streams.tools.events import make_listing, make_order, sample_photos
from streams.tools.kafka_clients import end_offsets, make_consumer, make_producer, read_from
from streams.tools.workerproc import ensure_worker

__all__ = ["run_demo"]


REGIONS = ("eu-north", "eu-west", "us-east")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


def _demo_listings(run: str) -> list[tuple[str, ProductImageEvent]]:
    """Every sample photo (inline and ``file://`` in turn), the first one twice, one corrupt."""
    photos = sample_photos()
    listings: list[tuple[str, ProductImageEvent]] = []
    for i, (path, name) in enumerate(photos):
        pid = f"demo-{run}-{name.lower()}"
        title = name.replace("-", " ")
        if i % 2:
            ev = make_listing(pid, uri=path.resolve().as_uri(), event_id=f"{pid}-v1", title=title)
        else:
            ev = make_listing(pid, image=path.read_bytes(), event_id=f"{pid}-v1", title=title)
        listings.append((pid, ev))
    first_path, first_name = photos[0]
    twin = f"demo-{run}-{first_name.lower()}-twin"
    listings.append(
        (twin, make_listing(twin, image=first_path.read_bytes(), event_id=f"{twin}-v1",
                            title=f"{first_name} (same photo)"))
    )  # fmt: skip
    corrupt = f"demo-{run}-corrupt"
    listings.append(
        (corrupt, make_listing(corrupt, image=first_path.read_bytes()[:600],
                               event_id=f"{corrupt}-v1", title="A truncated JPEG"))
    )  # fmt: skip
    return listings


def _demo_orders(run: str, labelled_ids: list[str]) -> list[OrderEvent]:
    """Orders for the labelled products, and one line for a product never listed."""
    rng = random.Random(run)
    now = datetime.now(UTC)
    orders = []
    for n in range(8):
        lines = [
            (p, rng.randint(1, 4), round(rng.uniform(0.5, 6.0), 2))
            for p in rng.sample(labelled_ids, k=min(3, len(labelled_ids)))
        ]
        if n == 7:
            lines.append((f"demo-{run}-never-listed", 1, 9.99))
        order_id = f"demo-{run}-order-{n}"
        orders.append(
            make_order(
                order_id, lines, region=REGIONS[n % len(REGIONS)], created_at=now,
                event_id=f"{order_id}-v1", customer_id=f"c{rng.randint(1, 99)}",
            )
        )  # fmt: skip
    return orders


def _print_labels(run: str, labels: list[Any], dead: list[Any], want: int, took: float) -> None:
    print(f"\nproduct-labels ({len(labels)} of {want} in {took:.1f} s):\n")
    rows = [
        [lab.product_id.removeprefix(f"demo-{run}-"), lab.category,
         f"{lab.category_score:.2f}", f"{lab.labels[0].label} ({lab.labels[0].score:.2f})",
         "yes" if lab.cached else "no", ",".join(lab.flags) or "-"]
        for lab in sorted(labels, key=lambda x: x.product_id)
    ]  # fmt: skip
    print(_table(rows, ["product", "category", "score", "top label", "cached", "flags"]))
    print(f"\n{get_settings().topics.product_images_dlq} ({len(dead)}):\n")
    for r in dead:
        letter = decode_headers(r.headers)
        print(f"  key={r.key.decode()}  code={letter.error_code}\n  {letter.error_message}")


def _print_enriched(run: str, enriched: list[Any], sent: int) -> None:
    print(f"\norders-enriched ({len(enriched)} of {sent}):\n")
    rows = []
    for done in sorted(enriched, key=lambda o: o.order_id):
        for line in done.items:
            rows.append(
                [done.order_id.removeprefix(f"demo-{run}-"), done.region,
                 line.product_id.removeprefix(f"demo-{run}-"), str(line.quantity),
                 f"{line.line_total:.2f}", line.category, line.unknown_reason or "-"]
            )  # fmt: skip
    print(_table(rows, ["order", "region", "product", "qty", "total", "category", "why"]))


def _print_sales(sales: list[Any]) -> None:
    latest = {}
    for r in sales:
        value = codec.decode_category_sales(r.value)
        latest[(value.category, value.region, value.window_start)] = value
    print(f"\ncategory-sales (windows updated by this run, {len(latest)}):\n")
    rows = [
        [v.category, v.region, v.season, v.window_start.strftime("%Y-%m-%d %H:%M"),
         str(v.orders), str(v.units), f"{v.revenue:.2f} {v.currency}"]
        for v in sorted(latest.values(), key=lambda v: -v.revenue)
    ]  # fmt: skip
    print(_table(rows, ["category", "region", "season", "window", "orders", "units", "revenue"]))


def _publish(producer: Any, topic: str, events: list[tuple[bytes, Any]]) -> None:
    for key, ev in events:
        producer.send(topic, key=key, value=codec.encode(ev))
    producer.flush()


def run_demo(*, start_worker: bool = True, timeout_s: float = 180.0) -> int:
    """Run the demo; return the process exit code."""
    settings = get_settings()
    run = uuid.uuid4().hex[:8]
    listings = _demo_listings(run)
    producer = make_producer(settings)
    consumer = make_consumer(settings)
    outputs = (
        settings.topics.product_labels,
        settings.topics.orders_enriched,
        settings.topics.product_images_dlq,
        settings.topics.orders_dlq,
        settings.topics.category_sales,
    )

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key and r.key.decode().startswith(f"demo-{run}")]

    with ensure_worker(
        settings,
        start=start_worker,
        timeout_s=timeout_s,
        log_name="demo-worker.log",
        env={"VITRINE_IMAGE_FILE_ROOT": str(SAMPLES_DIR)},
    ):
        start = {t: end_offsets(consumer, t) for t in outputs}
        print(f"\npublishing {len(listings)} listings to {settings.topics.product_images} ...")
        t0 = time.monotonic()
        _publish(producer, settings.topics.product_images, [(k.encode(), e) for k, e in listings])
        labelled = mine(
            read_from(
                consumer,
                {
                    **start[settings.topics.product_labels],
                    **start[settings.topics.product_images_dlq],
                },
                done=lambda rs: len(mine(rs)) >= len(listings),
                timeout_s=timeout_s,
            )
        )
        labels = [
            codec.decode_product_labelled(r.value)
            for r in labelled
            if r.topic == settings.topics.product_labels
        ]
        dead = [r for r in labelled if r.topic == settings.topics.product_images_dlq]
        want_labels = len(listings) - 1
        _print_labels(run, labels, dead, want_labels, time.monotonic() - t0)

        orders = _demo_orders(run, [lab.product_id for lab in labels])
        print(f"\npublishing {len(orders)} orders to {settings.topics.orders} ...")
        _publish(producer, settings.topics.orders, [(o.order_id.encode(), o) for o in orders])
        got = read_from(
            consumer,
            start[settings.topics.orders_enriched],
            done=lambda rs: len(mine(rs)) >= len(orders),
            timeout_s=timeout_s,
        )
        enriched = [codec.decode_enriched_order(r.value) for r in mine(got)]
        _print_enriched(run, enriched, len(orders))
        sales = read_from(
            consumer, start[settings.topics.category_sales], done=lambda rs: False, timeout_s=3.0
        )
        _print_sales(sales)
    producer.close()
    consumer.close()
    ok = len(labels) == want_labels and len(enriched) == len(orders) and len(dead) == 1
    print("\ndemo " + ("complete" if ok else "INCOMPLETE: some outputs did not arrive in time"))
    return 0 if ok else 1
