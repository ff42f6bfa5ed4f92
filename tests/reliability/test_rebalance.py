"""A second worker joins mid-stream and later leaves: every input has its output, once in sales.

Listings and orders are published steadily; a second worker joins (the Faust
group and the order consumer group both rebalance), then is stopped with
SIGTERM (they rebalance back). The ledger counts, per event id, what went in
and what came out: nothing may be missing, duplicates are allowed (delivery is
at-least-once) and reported, and the category-sales windows must still equal
the sums computed by hand (redelivered orders are not counted twice).
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import LocalStack, Topics
from tests.reliability.test_delivery import (
    ledger,
    listings,
    publish,
    wait_for_enriched,
    wait_for_labels,
)
from tests.reliability.test_sales_once import ENV, sales_orders, wait_for_windows

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def publish_paced(producer: Any, topic: str, msgs: list[Any], seconds: float) -> Any:
    """Publish ``msgs`` evenly over ``seconds`` from a thread (started), in 20 chunks a second."""
    chunk = max(1, round(len(msgs) / (seconds * 20)))

    def run() -> None:
        t0 = time.monotonic()
        for n, i in enumerate(range(0, len(msgs), chunk)):
            publish(producer, topic, msgs[i : i + chunk])
            time.sleep(max(0.0, t0 + (n + 1) * chunk * seconds / len(msgs) - time.monotonic()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_joins_and_leaves_mid_stream_and_nothing_is_lost(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    orders, sums = sales_orders(3000, "reb", start)
    images = listings(240, "reb")
    first = rworkers(**ENV).start()
    publishing = [
        publish_paced(rproducer, rtopics.orders, orders, 60),
        publish_paced(rproducer, rtopics.product_images, images, 60),
    ]
    wait_for_enriched(rtopics, 400, timeout_s=120)
    second = rworkers(**ENV).start()  # joins: both groups rebalance
    wait_for_enriched(rtopics, 1800, timeout_s=180)
    assert second.stop(signal.SIGTERM, timeout_s=90) == 0, second.tail()  # leaves
    for thread in publishing:
        thread.join()
    enriched = wait_for_enriched(rtopics, len(orders), timeout_s=180)
    labelled = wait_for_labels(rtopics, len(images), timeout_s=300)
    book = {
        "orders": ledger("rebalance (orders)", orders, enriched),
        "listings": ledger("rebalance (listings)", images, labelled),
    }
    assert book["orders"]["missing"] == 0, book
    assert book["listings"]["missing"] == 0, book
    got = wait_for_windows(rtopics, sums, timeout_s=60)
    diff = {k: (got.get(k), v) for k, v in sums.items() if got.get(k) != v}
    assert not diff, f"windows differ from the hand-computed sums: {diff}"
    assert first.running, first.tail()
    # Nothing stuck: the remaining worker is ready and has nothing left to read.
    time.sleep(6)  # one lag report (every 5 s)
    lag = [ln for ln in first.metrics().splitlines() if ln.startswith("vitrine_consumer_lag{")]
    assert lag
    assert all(float(ln.split()[-1]) == 0 for ln in lag), lag
