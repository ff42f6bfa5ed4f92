"""Redis is a view of the record topics: lost, restarted empty or full, it costs time, not data.

``../shared/DESIGN.md``, principles 1 and 2: product categories, co-purchases
and photo fingerprints are on Kafka; the worker rebuilds Redis from there, and
only the image cache may be evicted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import redis

from schemas import codec
from streams.tools.bench.pipeline import unique_images
from tests.conftest import LocalStack, Topics, consume
from tests.events import listing, order, photo_bytes
from tests.polling import wait_until
from tests.reliability.test_delivery import publish, wait_for_enriched, wait_for_labels

PRODUCTS = {
    "lemon": "Lemon",
    "lime": "Lime",
    "cucumber": "Cucumber",
    "zucchini": "Zucchini",
    "banana": "Banana",
}


def _recommend(port: int, product_id: str) -> list[tuple[str, float]] | None:
    """The bought-together partners ``/recommend`` gives; None while it answers 503."""
    url = f"http://127.0.0.1:{port}/recommend/{product_id}?region=eu-north&k=5"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            items = json.load(resp)["items"]
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return None
        raise
    return [(it["product_id"], it["score"]) for it in items if it["source"] == "bought_together"]


def _metric(worker: Any, name: str) -> float | None:
    for line in worker.metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _enriched_items(topics: Topics, n: int) -> list[Any]:
    records = consume(topics.bootstrap, topics.orders_enriched, expect=n, timeout_s=60)
    return [it for r in records for it in codec.decode_enriched_order(r.value).items]


def test_redis_restarted_empty_mid_stream_loses_nothing(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    worker = rworkers(VITRINE_ORDER_LABEL_WAIT_MS="0").start()
    photos = dict(photo_bytes())
    pid = {name: f"st-{rtopics.suffix}-{name}" for name in PRODUCTS}
    publish(
        rproducer,
        rtopics.product_images,
        [listing(pid[n], photos[c], seller_id="seller-a") for n, c in PRODUCTS.items()],
    )
    wait_for_labels(rtopics, len(PRODUCTS), timeout_s=120)
    # 30 orders make two bought-together pairs.
    first = [order(f"o1-{i}", [(pid["lemon"], 1, 0.5), (pid["lime"], 2, 0.4)]) for i in range(20)]
    first += [
        order(f"o1c-{i}", [(pid["cucumber"], 1, 1.0), (pid["zucchini"], 1, 1.2)]) for i in range(10)
    ]
    publish(rproducer, rtopics.orders, first)
    wait_for_enriched(rtopics, len(first), timeout_s=120)
    applied = f'vitrine_view_records_applied_total{{topic="{rtopics.orders_enriched}"}}'
    wait_until(lambda: (_metric(worker, applied) or 0) >= len(first), "every order counted")
    before = {p: _recommend(worker.web_port, p) for p in pid.values()}
    assert before[pid["lemon"]], before
    assert before[pid["lemon"]][0][0] == pid["lime"], before

    # Redis restarted empty (no persistence), as a deploy, a crash or a failover
    # to an empty replica does; orders for products labelled before keep coming.
    stack = private_stack.stack
    stack.stop_redis()
    restarted = time.monotonic()
    stack.start_redis()
    stack.wait_redis(time.monotonic() + 30)
    with redis.Redis.from_url(rtopics.redis_url) as client:
        assert client.dbsize() == 0
    second = [order(f"o2-{i}", [(list(pid.values())[i % len(pid)], 1, 1.0)]) for i in range(40)]
    publish(rproducer, rtopics.orders, second)
    wait_for_enriched(rtopics, len(first) + len(second), timeout_s=120)
    wait_until(
        lambda: (
            _metric(worker, "vitrine_view_caught_up") == 1.0
            and _recommend(worker.web_port, pid["lemon"]) is not None
        ),
        "the views rebuilt",
        timeout_s=60,
    )
    rebuild_s = _metric(worker, "vitrine_view_rebuild_seconds")
    print(
        f"\nRedis restarted empty: views rebuilt in {rebuild_s:.2f} s "
        f"(worker), ready again {time.monotonic() - restarted:.1f} s after the restart"
    )
    assert _metric(worker, 'vitrine_view_rebuilds_total{topic="' + rtopics.product_labels + '"}')

    # No order came out "unknown" for a product the record knew.
    items = _enriched_items(rtopics, len(first) + len(second))
    assert len(items) >= 2 * 30 + 40
    unknown = [it for it in items if it.category_status != "labelled"]
    assert unknown == [], unknown[:3]

    # The bought-together pairs are those of before (the new orders have one line each).
    after = {p: _recommend(worker.web_port, p) for p in pid.values()}
    for p, partners in before.items():
        got = after[p] or []
        assert [m for m, _ in got] == [m for m, _ in partners or []], (p, got, partners)
        for (_, s1), (_, s2) in zip(got, partners or [], strict=True):
            assert abs(s1 - s2) <= 1e-3 * max(abs(s2), 1.0)

    # A copy of an old photo by another seller is still flagged, naming the original.
    publish(
        rproducer,
        rtopics.product_images,
        [listing(f"st-{rtopics.suffix}-copy", photos["Lemon"], seller_id="seller-b")],
    )
    wait_for_labels(rtopics, len(PRODUCTS) + 1, timeout_s=60)
    copy = next(
        lab
        for r in consume(rtopics.bootstrap, rtopics.product_labels, expect=len(PRODUCTS) + 1)
        if (lab := codec.decode_product_labelled(r.value)).product_id.endswith("-copy")
    )
    assert "duplicate_image" in copy.flags, copy.flags
    assert copy.duplicate_of is not None
    assert copy.duplicate_of.product_id == pid["lemon"]
    assert worker.running


def test_a_full_redis_evicts_only_the_image_cache(
    private_stack: LocalStack, rtopics: Topics, rworkers: Any, rproducer: Any
) -> None:
    with redis.Redis.from_url(rtopics.redis_url) as client:
        used = int(client.info("memory")["used_memory"])
        evicted_before = int(client.info("stats")["evicted_keys"])
        # The state of 800 products (about 0.4 MB) fits, with room for about 400
        # of their 800 image results (about 1 KB each): the cache must give way.
        client.config_set("maxmemory", str(used + 800_000))
        try:
            _label_and_order_under_pressure(client, rtopics, rworkers, rproducer)
            assert int(client.info("stats")["evicted_keys"]) > evicted_before
        finally:
            client.config_set("maxmemory", "512mb")


def _label_and_order_under_pressure(
    client: redis.Redis, topics: Topics, rworkers: Any, rproducer: Any
) -> None:
    worker = rworkers(VITRINE_ORDER_LABEL_WAIT_MS="0").start()
    photos = [data for _, data in photo_bytes()]
    n = 800
    pids = [f"full-{topics.suffix}-{i}" for i in range(n)]
    publish(
        rproducer,
        topics.product_images,
        [listing(p, img) for p, img in zip(pids, unique_images(photos, n, "full"), strict=True)],
    )
    wait_for_labels(topics, n, timeout_s=300)
    sold = [order(f"of-{i}", [(pids[i], 1, 1.0), (pids[(i + 1) % n], 1, 2.0)]) for i in range(n)]
    publish(rproducer, topics.orders, sold)
    wait_for_enriched(topics, n, timeout_s=120)
    applied = f'vitrine_view_records_applied_total{{topic="{topics.orders_enriched}"}}'
    wait_until(lambda: (_metric(worker, applied) or 0) >= n, "every order counted", timeout_s=60)

    prefix = f"test-{topics.suffix}"
    # Every product's category and co-purchases are intact; only cache entries went.
    states = client.mget([f"{prefix}:product:{p}" for p in pids])
    assert sum(v is None for v in states) == 0
    pairs = client.pipeline()
    for p in pids:
        pairs.zcard(f"{prefix}:rec:{p}")
    assert all(c == 2 for c in pairs.execute())  # the previous and the next product
    assert _metric(worker, "vitrine_redis_full_total") is None, "no state write was refused"
    cached = sum(1 for _ in client.scan_iter(f"{prefix}:img:*", count=1000))
    assert cached < n, "the image cache was evicted"
    unknown = [it for it in _enriched_items(topics, n) if it.category_status != "labelled"]
    assert unknown == [], unknown[:3]
    assert worker.running
