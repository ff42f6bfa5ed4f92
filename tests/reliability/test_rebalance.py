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
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.deadletter import decode_headers
from tests.conftest import LocalStack, Topics, consume
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


# Faust's own account of a message it dropped or an offset it did not commit
# (logged at INFO or above): a lost event around a rebalance shows up here.
FAUST_DROPS = ("DROPPED MESSAGE", "Discarded commit", "Skipping message", "out of range")


def _missing(topics: Topics, sent: list[tuple[bytes, bytes]], got: Counter[str]) -> str:
    """The event ids sent and not labelled, and those of them on the dead-letter topic."""
    missing = sorted({k.decode() for k, _ in sent} - set(got))
    if not missing:
        return ""
    letters = [
        decode_headers(r.headers)
        for r in consume(topics.bootstrap, topics.product_images_dlq, expect=10**9, timeout_s=3)
    ]
    dead = {d.event_id: f"{d.error_code}: {d.error_message}" for d in letters}
    return f"missing {missing[:20]}; dead-lettered among them: " + str(
        {m: dead[m] for m in missing if m in dead}
    )


def _diagnose(workers: list[Any], missing: str = "") -> str:
    """What each worker says: its readiness, lag and unreadable partitions, and its log's tail."""
    out = [missing] if missing else []
    for n, w in enumerate(workers):
        out.append(f"--- worker {n} running={w.running}")
        if w.running:
            try:
                out += [
                    ln
                    for ln in w.metrics().splitlines()
                    if ln.startswith(("vitrine_consumer_lag{", "vitrine_unreadable"))
                ]
            except OSError as exc:
                out.append(f"metrics: {exc}")
        drops = [ln for ln in w.tail(10**6).splitlines() if any(d in ln for d in FAUST_DROPS)]
        out += drops[-20:]
        out.append(w.tail(80))
    return "\n".join(out)


# A rebalance usually settles in seconds (the whole test ~80 s alone), but a member
# that joins or leaves while the others are mid-batch can hold the group until
# Kafka's session and rebalance timeouts (Faust's 60 s) pass: twice in CI the
# test ran past the suite's 300 s. The waits allow for that and add up to less
# than this limit, each phase prints when it ended, and a failure says which
# phase stalled with the workers' own account, not pytest-timeout's stack dump.
@pytest.mark.timeout(900)
def test_a_worker_joins_and_leaves_mid_stream_and_nothing_is_lost(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    started = time.monotonic()

    def phase(name: str) -> None:
        print(f"{name}: {time.monotonic() - started:.1f} s", flush=True)

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    orders, sums = sales_orders(3000, "reb", start)
    images = listings(240, "reb")
    first = rworkers(**ENV).start()
    publishing = [
        publish_paced(rproducer, rtopics.orders, orders, 60),
        publish_paced(rproducer, rtopics.product_images, images, 60),
    ]
    wait_for_enriched(rtopics, 400, timeout_s=120)
    phase("400 orders enriched")
    second = rworkers(**ENV).start()  # joins: both groups rebalance
    phase("second worker ready")
    wait_for_enriched(rtopics, 1800, timeout_s=240)
    phase("1800 orders enriched")
    assert second.stop(signal.SIGTERM, timeout_s=90) == 0, second.tail()  # leaves
    phase("second worker stopped")
    for thread in publishing:
        thread.join()
    phase("all published")
    enriched = wait_for_enriched(rtopics, len(orders), timeout_s=180)
    phase(f"{len(enriched)} orders enriched")
    labelled = wait_for_labels(rtopics, len(images), timeout_s=180)
    phase(f"{len(labelled)} listings labelled")
    book = {
        "orders": ledger("rebalance (orders)", orders, enriched),
        "listings": ledger("rebalance (listings)", images, labelled),
    }
    why = _missing(rtopics, images, labelled)
    assert book["orders"]["missing"] == 0, f"{book}\n{_diagnose([first, second])}"
    assert book["listings"]["missing"] == 0, f"{book}\n{_diagnose([first, second], why)}"
    got = wait_for_windows(rtopics, sums, timeout_s=60)
    assert first.running, first.tail()
    # Nothing stuck: the remaining worker is ready and has nothing left to read.
    time.sleep(6)  # one lag report (every 5 s)
    lag = [ln for ln in first.metrics().splitlines() if ln.startswith("vitrine_consumer_lag{")]
    assert lag
    assert all(float(ln.split()[-1]) == 0 for ln in lag), lag
    # Every window equals its hand-computed sum: the windows a leaving worker
    # changed in its last second are emitted again by their next owner
    # (docs/DELIVERY.md, "Every window emitted again by its owner").
    diff = {k: (got.get(k), v) for k, v in sums.items() if got.get(k) != v}
    assert not diff, f"windows differ from the hand-computed sums: {diff}\n{_diagnose([first])}"
