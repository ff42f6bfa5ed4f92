"""Every category-sales window survives Kafka's log cleaner, and so does the report.

Keyed ``category|region``, the compacted topic kept only the newest window of each
pair once the cleaner ran, and ``vitrine report`` (which reads the topic from the
beginning) lost the rest. Here orders over several hourly windows of the same
category and regions go through a real worker in rounds (so every window is
updated several times), the cleaner is forced to run on category-sales, and every
window must still be there with its totals, and the report's files unchanged.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas.records import CategorySales
from streams.tools.report.command import read_windows, report_windows
from tests.compaction import force_compaction
from tests.conftest import LocalStack, Topics, make_topics
from tests.events import order

pytestmark = pytest.mark.integration

REGIONS = ("eu-north", "sa-east")
WINDOWS = 4
ROUNDS = 3

Sums = dict[tuple[str, datetime], tuple[int, int, float]]


@pytest.fixture
def topics(kafka_stack: LocalStack) -> Topics:
    """This module's topics, category-sales compacted as in production (worker_factory uses it)."""
    return make_topics(kafka_stack, compacted=("category_sales",))


def by_window(windows: list[CategorySales]) -> Sums:
    return {
        (w.region, w.window_start): (w.orders, w.units, round(w.revenue, 4))
        for w in windows
        if w.category == "unknown"
    }


def wait_for(want: Sums, timeout_s: float = 90) -> tuple[list[CategorySales], int]:
    deadline = time.monotonic() + timeout_s
    while True:
        windows, records = read_windows(timeout_s=10)
        if by_window(windows) == want or time.monotonic() > deadline:
            return windows, records
        time.sleep(1)


def report_files(windows: list[CategorySales], out: Path) -> dict[str, str]:
    text, files = report_windows(windows, out, southern=frozenset({"sa-east"}), min_orders=1)
    return {"terminal": text} | {
        f.name: f.read_text(encoding="utf-8") for f in files if f.suffix in {".csv", ".md"}
    }


def test_every_window_and_the_report_survive_compaction(
    topics: Topics,
    worker_factory: Any,
    producer: KafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in topics.env().items():
        monkeypatch.setenv(name, value)  # read_windows reads the settings
    worker = worker_factory(VITRINE_ORDER_LABEL_WAIT_MS="0").start()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    sums: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [0, 0, 0.0])
    for n in range(ROUNDS):
        # One order per window and region per round, in time order: every round
        # updates every window once more, so each has several records to compact.
        for h in range(WINDOWS):
            for region in REGIONS:
                at = start + timedelta(hours=h, minutes=10 * n + 5)
                qty, price = 1 + n, 2.5 + h
                key, value = order(
                    f"o-{n}-{h}-{region}",
                    [(f"ghost-{h}", qty, price)],
                    region=region,
                    created_at=at,
                )
                producer.send(topics.orders, key=key, value=value)
                acc = sums[(region, start + timedelta(hours=h))]
                acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + qty, round(acc[2] + qty * price, 4)
        producer.flush()
        want = {k: (v[0], v[1], v[2]) for k, v in sums.items()}
        windows, records_before = wait_for(want)
        assert by_window(windows) == want, worker.tail()
    assert len(want) == WINDOWS * len(REGIONS)
    assert records_before >= ROUNDS * len(want)
    before = report_files(windows, tmp_path / "before")

    done = force_compaction(topics.bootstrap, topics.category_sales, timeout_s=120)

    assert done.removed >= (ROUNDS - 1) * len(want), done
    after_windows, records_after = read_windows(timeout_s=30)
    assert records_after < records_before
    assert by_window(after_windows) == want
    assert sorted(after_windows, key=lambda w: w.event_id) == sorted(
        windows, key=lambda w: w.event_id
    )
    assert report_files(after_windows, tmp_path / "after") == before
