"""A simulated quarter of back-filled orders through a real worker: the windows hold the truth.

The orders are months old when they arrive (event time far behind the wall
clock), which Faust's own wall-clock window expiry deleted at its next cleanup;
every daily window must still equal the sums computed here from the generated
orders, and an order older than the windows' retention is late: enriched, not
counted, and counted as late.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from inference.serving.engine import REVIEW_FLAGS
from schemas import codec
from schemas.records import CategorySales, OrderEvent
from streams.settings import get_settings
from streams.tools.report import rank
from streams.tools.simulate.command import list_products, publish_history, settled_windows
from streams.tools.simulate.generator import DIMENSIONS, Simulation, catalogue, simulate
from tests.conftest import Topics, consume

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY_S = 86400


def hand_sums(sim: Simulation) -> dict[tuple[str, str, datetime], tuple[int, int, float]]:
    """(category, region, day) -> (orders, units, revenue), from the generated orders."""
    cats = sim.category_of()
    acc: dict[tuple[str, str, datetime], list[Any]] = defaultdict(lambda: [set(), 0, 0.0])
    for o in sim.orders:
        day = o.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        for it in o.items:
            a = acc[(cats[it.product_id], o.region, day)]
            a[0].add(o.order_id)
            a[1] += it.quantity
            a[2] += it.quantity * it.unit_price
    return {k: (len(v[0]), v[1], round(v[2], 2)) for k, v in acc.items()}


def as_sums(
    windows: list[CategorySales],
) -> dict[tuple[str, str, datetime], tuple[int, int, float]]:
    return {
        (w.category, w.region, w.window_start): (w.orders, w.units, round(w.revenue, 2))
        for w in windows
    }


def late_orders(worker: Any) -> float:
    m = re.search(r"^vitrine_sales_late_orders_total (\S+)$", worker.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def test_back_filled_quarter_lands_in_its_windows_and_late_orders_are_not_counted(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = worker_factory(VITRINE_SALES_WINDOW_S=str(DAY_S)).start()
    for name, value in topics.env().items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    tag = uuid.uuid4().hex[:6]
    products = catalogue(tag)
    labels = list_products(settings, products, timeout_s=120)
    # Right, or flagged for review (a borderline carton tips either way by CPU);
    # the windows are checked against the categories the worker gave.
    assert all(
        lab.category == p.category or set(REVIEW_FLAGS) & set(lab.flags)
        for p in products
        if (lab := labels[p.product_id])
    ), {p.product_id: labels[p.product_id].category for p in products}
    products = [dataclasses.replace(p, category=labels[p.product_id].category) for p in products]
    sim = simulate(
        products, start=datetime(2025, 6, 1, tzinfo=UTC), days=90, orders_per_day=30, tag=tag
    )
    assert len(sim.orders) > 2000
    done = publish_history(settings, sim, progress=False)
    assert (done.published, done.enriched, done.dead_lettered) == (
        len(sim.orders),
        len(sim.orders),
        0,
    )

    windows = settled_windows(settings, sim, timeout_s=60)
    assert as_sums(windows) == hand_sums(sim)
    # What `vitrine report` ranks, seasons local to each region's hemisphere.
    for by in DIMENSIONS:
        rows = rank(windows, by, southern=settings.orders.southern_regions)
        assert [row.name for row in rows] == sim.ranking(by)
        assert {row.name: row.revenue for row in rows} == pytest.approx(sim.revenue_by(by))
    assert late_orders(worker) == 0

    # Thirty days behind the newest order: its window expired (7 days' retention).
    newest = sim.orders[-1]
    late = OrderEvent(
        schema_version=1,
        event_id=f"{tag}-late",
        occurred_at=datetime.now(UTC),
        order_id=f"{tag}-late",
        region=newest.region,
        currency="EUR",
        created_at=newest.created_at - timedelta(days=30),
        items=newest.items,
    )
    producer.send(topics.orders, key=late.order_id.encode(), value=codec.encode(late))
    producer.flush()
    enriched = consume(topics.bootstrap, topics.orders_enriched, expect=len(sim.orders) + 1)
    assert late.order_id.encode() in {r.key for r in enriched}  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while late_orders(worker) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert late_orders(worker) == 1
    assert as_sums(settled_windows(settings, sim, timeout_s=10, quiet_s=2)) == hand_sums(sim)
    assert worker.running, worker.tail()
