"""Nothing is lost across a worker kill, a SIGTERM, a broker restart or a Redis outage.

Each test counts in and out by event_id. These tests stop and start servers, so
they run on a stack of this module's own, not the session's.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import codec
from streams.tools.bench.pipeline import unique_images
from tests.conftest import LocalStack, Topics, consume
from tests.events import listing, order, photo_bytes

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def listings(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    photos = [data for _, data in photo_bytes()]
    return [
        listing(f"{tag}-{i}", img, event_id=f"{tag}-{i}")
        for i, img in enumerate(unique_images(photos, n, tag))
    ]


def ledger(fault: str, sent: list[tuple[bytes, bytes]], got: Counter[str]) -> dict[str, int]:
    """In and out by event id for one fault, printed (``pytest -s``) for the record."""
    ids = {k.decode() for k, _ in sent}
    book = {
        "sent": len(ids),
        "received": len(ids & set(got)),
        "missing": len(ids - set(got)),
        "duplicated": sum(n - 1 for k, n in got.items() if k in ids and n > 1),
    }
    print(f"ledger {fault}: {book}")
    return book


def publish(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def label_ids(records: list[Any]) -> Counter[str]:
    return Counter(codec.decode_product_labelled(r.value).event_id for r in records)


def enriched_ids(records: list[Any]) -> Counter[str]:
    return Counter(codec.decode_enriched_order(r.value).event_id for r in records)


def wait_for_labels(topics: Topics, n: int, timeout_s: float = 180) -> Counter[str]:
    """Label counts by event_id once ``n`` distinct events are labelled (or the timeout)."""
    return _wait_for(topics.bootstrap, topics.product_labels, label_ids, n, timeout_s)


def wait_for_enriched(topics: Topics, n: int, timeout_s: float = 180) -> Counter[str]:
    """Enriched-order counts by event_id once ``n`` distinct orders are out (or the timeout)."""
    return _wait_for(topics.bootstrap, topics.orders_enriched, enriched_ids, n, timeout_s)


def _wait_for(
    bootstrap: str,
    topic: str,
    ids: Callable[[list[Any]], Counter[str]],
    n: int,
    timeout_s: float,
) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        # Read everything there is (duplicates included), then count distinct ids.
        got = ids(consume(bootstrap, topic, expect=10**9, timeout_s=3))
        if len(got) >= n or time.monotonic() > deadline:
            return got


def orders(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    """``n`` orders of products nobody labelled: each fresh batch waits for labels a while."""
    return [
        order(f"{tag}-{i}", [(f"{tag}-p{i % 40}", 1, 2.5)], event_id=f"{tag}-{i}") for i in range(n)
    ]


def test_worker_killed_mid_stream_loses_nothing(
    rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    msgs = listings(96, "kill")
    first = rworkers(VITRINE_MAX_BATCH_SIZE="8").start()
    publish(rproducer, rtopics.product_images, msgs)
    # Let it label some, then kill it without warning.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = consume(rtopics.bootstrap, rtopics.product_labels, expect=16, timeout_s=1)
        if len(done) >= 16:
            break
    first.kill()
    partial = label_ids(consume(rtopics.bootstrap, rtopics.product_labels, expect=0, timeout_s=1))
    assert 0 < len(partial) < len(msgs), "the kill should land mid-stream"
    rworkers(VITRINE_MAX_BATCH_SIZE="8").start()
    got = wait_for_labels(rtopics, len(msgs))
    ledger("worker killed (listings)", msgs, got)
    assert set(got) == {k.decode() for k, _ in msgs}
    # At-least-once: re-delivery after a kill is allowed, loss is not.
    assert sum(got.values()) >= len(msgs)


def test_sigterm_finishes_the_in_flight_batch_and_commits(
    rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    msgs = listings(64, "term")
    first = rworkers(VITRINE_MAX_BATCH_SIZE="16").start()
    publish(rproducer, rtopics.product_images, msgs)
    consume(rtopics.bootstrap, rtopics.product_labels, expect=1, timeout_s=120)
    t0 = time.monotonic()
    assert first.stop(signal.SIGTERM, timeout_s=90) == 0, first.tail()
    took = time.monotonic() - t0
    assert took < 60, f"shutdown took {took:.1f} s"
    before = label_ids(consume(rtopics.bootstrap, rtopics.product_labels, expect=0, timeout_s=2))
    rworkers(VITRINE_MAX_BATCH_SIZE="16").start()
    got = wait_for_labels(rtopics, len(msgs))
    ledger("SIGTERM (listings)", msgs, got)
    assert set(got) == {k.decode() for k, _ in msgs}
    # Everything the first worker produced was committed: nothing is labelled twice.
    assert max(got.values()) == 1, [k for k, v in got.items() if v > 1][:5]
    assert len(before) > 0


def publish_steadily(
    producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]
) -> threading.Thread:
    """Publish ``msgs`` in chunks of 100 every 0.2 s from a thread (started)."""

    def run() -> None:
        for i in range(0, len(msgs), 100):
            publish(producer, topic, msgs[i : i + 100])
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_orders_survive_a_worker_kill_and_a_sigterm(
    rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    # Fresh orders of unlabelled products wait up to 2 s for labels, so the
    # worker always has a batch in flight while orders keep coming.
    env = {"VITRINE_ORDER_MAX_BATCH_SIZE": "200", "VITRINE_ORDER_LABEL_WAIT_MS": "2000"}
    killed = orders(3000, "okill")
    first = rworkers(**env).start()
    publishing = publish_steadily(rproducer, rtopics.orders, killed)
    wait_for_enriched(rtopics, 300, timeout_s=120)
    first.kill()
    publishing.join()
    partial = wait_for_enriched(rtopics, 0, timeout_s=0)
    assert 0 < len(partial) < len(killed), "the kill should land mid-stream"
    second = rworkers(**env).start()
    got = wait_for_enriched(rtopics, len(killed))
    ledger("worker killed (orders)", killed, got)
    assert set(got) == {k.decode() for k, _ in killed}

    termed = orders(2000, "oterm")
    publishing = publish_steadily(rproducer, rtopics.orders, termed)
    wait_for_enriched(rtopics, len(killed) + 300, timeout_s=120)
    assert second.stop(signal.SIGTERM, timeout_s=90) == 0, second.tail()
    publishing.join()
    before = wait_for_enriched(rtopics, 0, timeout_s=0)
    assert len(before) < len(killed) + len(termed), "the SIGTERM should land mid-stream"
    rworkers(**env).start()
    got = wait_for_enriched(rtopics, len(killed) + len(termed))
    ledger("SIGTERM (orders)", termed, got)
    assert {k.decode() for k, _ in termed} <= set(got)
    # What the stopped worker produced was committed: no order of the second lot twice.
    twice = [k for k, v in got.items() if k.startswith("oterm-") and v > 1]
    assert not twice, twice[:5]


def test_broker_restart_loses_nothing(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    msgs = listings(64, "broker")
    sold = orders(400, "obroker")
    worker = rworkers(VITRINE_ORDER_LABEL_WAIT_MS="0").start()
    publish(rproducer, rtopics.product_images, msgs[:32])
    publish(rproducer, rtopics.orders, sold[:200])
    consume(rtopics.bootstrap, rtopics.product_labels, expect=4, timeout_s=120)
    private_stack.stack.stop_kafka()
    time.sleep(3)
    private_stack.stack.start_kafka()
    private_stack.stack.wait_kafka(time.monotonic() + 120)
    publish(rproducer, rtopics.product_images, msgs[32:])
    publish(rproducer, rtopics.orders, sold[200:])
    got = wait_for_labels(rtopics, len(msgs), timeout_s=240)
    ledger("broker restart (listings)", msgs, got)
    assert set(got) == {k.decode() for k, _ in msgs}, worker.tail()
    enriched = wait_for_enriched(rtopics, len(sold), timeout_s=120)
    ledger("broker restart (orders)", sold, enriched)
    assert set(enriched) == {k.decode() for k, _ in sold}, worker.tail()
    assert worker.running, "the worker rides out a broker restart"


def test_redis_outage_keeps_labelling_and_enriching_then_recovers(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    worker = rworkers(VITRINE_ORDER_LABEL_WAIT_MS="0").start()
    photos = dict(photo_bytes())
    stack = private_stack.stack
    stack.stop_redis()
    try:
        publish(
            rproducer,
            rtopics.product_images,
            [
                listing("r-banana", photos["Banana"], event_id="down-1"),
                listing("r-banana-again", photos["Banana"], event_id="down-2"),
            ],
        )
        publish(rproducer, rtopics.orders, [order("r-o1", [("r-banana", 1, 0.5)])])
        labels = wait_for_labels(rtopics, 2, timeout_s=60)
        assert set(labels) == {"down-1", "down-2"}
        # The order is held, not enriched "unknown": its product is on the record.
        held = consume(rtopics.bootstrap, rtopics.orders_enriched, expect=1, timeout_s=5)
        assert held == []
        assert "vitrine_redis_up 0.0" in worker.metrics()
    finally:
        stack.start_redis()
        stack.wait_redis(time.monotonic() + 30)
    # Redis came back empty: the view is rebuilt from product-labels, and the held
    # order goes out with the category its product got while Redis was down.
    enriched = consume(rtopics.bootstrap, rtopics.orders_enriched, expect=1, timeout_s=60)
    item = codec.decode_enriched_order(enriched[0].value).items[0]
    assert item.category_status == "labelled", item
    banana = [
        codec.decode_product_labelled(r.value)
        for r in consume(rtopics.bootstrap, rtopics.product_labels, expect=2, timeout_s=30)
    ]
    assert item.category == next(b.category for b in banana if b.product_id == "r-banana")
    # Back: the first listing after recovery is inferred and cached, the next one hits.
    time.sleep(1.5)  # past the cache's retry interval
    publish(
        rproducer, rtopics.product_images, [listing("r-up-1", photos["Banana"], event_id="up-1")]
    )
    wait_for_labels(rtopics, 3, timeout_s=60)
    publish(
        rproducer, rtopics.product_images, [listing("r-up-2", photos["Banana"], event_id="up-2")]
    )
    out = consume(rtopics.bootstrap, rtopics.product_labels, expect=4, timeout_s=60)
    by_id = {
        codec.decode_product_labelled(r.value).event_id: codec.decode_product_labelled(r.value)
        for r in out
    }
    assert by_id["up-2"].cached is True
    publish(rproducer, rtopics.orders, [order("r-o2", [("r-up-2", 1, 0.5)])])
    enriched = consume(rtopics.bootstrap, rtopics.orders_enriched, expect=2, timeout_s=60)
    assert len(enriched) == 2
    items = {
        codec.decode_enriched_order(r.value).order_id: codec.decode_enriched_order(r.value).items[0]
        for r in enriched
    }
    assert items["r-o2"].category_status == "labelled"
    assert worker.running
