"""A worker SIGKILLed mid-stream and started again resumes output within seconds.

Before static group membership, the new worker's order consumer waited for the
dead member's session to expire before the group gave it any partition: output
stopped for the whole session timeout. Here 20,000 orders of labelled products
are published at about 2,000 a second; the worker is killed once some are out
and started again with the same instance id (as a restarted container or a
StatefulSet pod would be), and the test measures, from the output records'
timestamps, how long after the new worker is started (and after it is
ready) enriched orders come out again. It also counts in and out
(at-least-once: only the batch in flight at the kill may come out twice) and
checks that the sales windows count each order once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas import codec
from tests.conftest import LocalStack, Topics, consume
from tests.events import order
from tests.reliability.test_delivery import ledger, listings, publish, wait_for_labels

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ORDERS = 20_000
BATCH = 512
REGIONS = ("eu-north", "eu-west", "us-east")
#: What a container restarted in place, or a StatefulSet pod, keeps across the restart
#: (with its web port: the instance id is "<id>-<port>").
#: The session timeout is long here, so that waiting for the dead member's
#: session (the defect this test guards against) cannot hide in the noise of a
#: worker's own start on a loaded machine (3 to 11 s on the 2-core VM).
SESSION_TIMEOUT_S = 30
ENV = {
    "VITRINE_WORKER_INSTANCE_ID": "restart-test-0",
    "VITRINE_ORDER_MAX_BATCH_SIZE": str(BATCH),
    "VITRINE_ORDER_LABEL_WAIT_MS": "0",
    "VITRINE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_S * 1000),
}
#: Output resumes within the first worker's own start time (launch to ready,
#: measured in the same run) plus this: a third of the session timeout.
RESUME_MARGIN_S = SESSION_TIMEOUT_S / 3


class Tail:
    """Every record of a topic, read from its start by a thread: (event id, timestamp ms)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.seen: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for recs in self._consumer.poll(timeout_ms=100).values():
                self.seen += [
                    (codec.decode_enriched_order(r.value).event_id, r.timestamp) for r in recs
                ]

    def wait(self, n: int, timeout_s: float) -> int:
        """Block until ``n`` distinct event ids are seen (or the timeout); return how many."""
        deadline = time.monotonic() + timeout_s
        while (got := len({e for e, _ in self.seen})) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return got

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def sales_orders(
    products: list[str], start: datetime
) -> tuple[list[tuple[bytes, bytes]], dict[tuple[str, datetime], list[Any]]]:
    """``ORDERS`` one-line orders of ``products``, and their sums per (region, window)."""
    msgs, sums = [], defaultdict(lambda: [0, 0, 0.0])
    for i in range(ORDERS):
        region = REGIONS[i % 3]
        created = start + timedelta(minutes=(i * 7) % 120)
        qty, price = 1 + i % 4, round(0.5 + (i % 9) * 1.25, 2)
        msgs.append(
            order(f"rs-{i}", [(products[i % len(products)], qty, price)], region=region,
                  created_at=created, event_id=f"rs-{i}")
        )  # fmt: skip
        acc = sums[(region, created.replace(minute=0, second=0, microsecond=0))]
        acc[0] += 1
        acc[1] += qty
        acc[2] = round(acc[2] + qty * price, 4)
    return msgs, dict(sums)


def windows_by_region(topics: Topics) -> dict[tuple[str, datetime], list[Any]]:
    """The latest value of every sales window, summed over categories per (region, window)."""
    latest: dict[tuple[str, str, datetime], Any] = {}
    for r in consume(topics.bootstrap, topics.category_sales, expect=10**9, timeout_s=3):
        v = codec.decode_category_sales(r.value)
        key = (v.category, v.region, v.window_start)
        if key not in latest or v.updated_at >= latest[key].updated_at:
            latest[key] = v
    out: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [0, 0, 0.0])
    for (_, region, start), v in latest.items():
        acc = out[(region, start)]
        acc[0] += v.orders
        acc[1] += v.units
        acc[2] = round(acc[2] + v.revenue, 4)
    return dict(out)


def test_killed_worker_started_again_resumes_output_at_once(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    products = listings(6, "rs")
    first = rworkers(**ENV)
    t_first = time.monotonic()
    first.start()
    first_start_s = time.monotonic() - t_first
    publish(rproducer, rtopics.product_images, products)
    assert len(wait_for_labels(rtopics, len(products), timeout_s=120)) == len(products)

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    sold, sums = sales_orders([k.decode() for k, _ in products], start)
    tail = Tail(rtopics.bootstrap, rtopics.orders_enriched, rtopics.partitions)
    try:

        def steadily() -> None:  # about 2,000 orders a second
            for i in range(0, len(sold), 1000):
                publish(rproducer, rtopics.orders, sold[i : i + 1000])
                time.sleep(0.5)

        publishing = threading.Thread(target=steadily, daemon=True)
        publishing.start()
        tail.wait(2000, timeout_s=60)
        first.kill()
        killed_ms = time.time() * 1000
        before = len({e for e, _ in tail.seen})
        assert 0 < before < len(sold), "the kill should land mid-stream"

        t0 = time.monotonic()
        second = rworkers(web_port=first.web_port, **ENV)
        launched_ms = time.time() * 1000
        second.start()
        ready_ms = time.time() * 1000
        publishing.join()
        got_n = tail.wait(len(sold), timeout_s=120)
        drained_s = time.monotonic() - t0
        seen = list(tail.seen)
    finally:
        tail.close()

    last_before = max(ts for _, ts in seen if ts <= killed_ms)
    resumed = min((ts for _, ts in seen if ts > killed_ms), default=None)
    assert resumed is not None, second.tail()
    # The worker says it is ready only once Faust's group has assigned it
    # partitions, so a wait for a dead member's session shows before "ready":
    # the gap that matters runs from the new worker's launch.
    gap_s = (resumed - launched_ms) / 1000
    print(
        f"restart: {before} of {len(sold)} out at the kill; new worker ready "
        f"{(ready_ms - launched_ms) / 1000:.1f} s after its launch; output resumed "
        f"{gap_s:.2f} s after its launch, {(resumed - ready_ms) / 1000:.2f} s after ready "
        f"(a fresh start took {first_start_s:.1f} s) "
        f"(no output for {(resumed - last_before) / 1000:.1f} s); "
        f"all {len(sold)} out {drained_s:.1f} s after the kill"
    )
    got = Counter(e for e, _ in seen)
    book = ledger("worker killed and restarted (orders)", sold, got)
    assert got_n == len(sold), second.tail()
    assert book["missing"] == 0, book
    # At-least-once: only what the dead worker produced and did not commit comes again.
    assert book["duplicated"] <= BATCH, book
    bound_s = first_start_s + RESUME_MARGIN_S
    assert gap_s < bound_s, (
        f"output resumed {gap_s:.1f} s after launch, a fresh start took {first_start_s:.1f} s"
        f"\n{second.tail()}"
    )

    deadline = time.monotonic() + 60
    while (windows := windows_by_region(rtopics)) != sums and time.monotonic() < deadline:
        time.sleep(1)
    diff = {k: (windows.get(k), v) for k, v in sums.items() if windows.get(k) != v}
    assert not diff, f"windows differ from the hand-computed sums: {diff}\n{second.tail()}"
