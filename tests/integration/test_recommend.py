"""Recommendations from a real worker: planted pairs come first, a new product gets its category."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import codec
from streams.settings import Settings
from streams.worker.cache import LabelCache
from streams.worker.recommend import Recommendations, RecommendConfig, Recommender
from tests.conftest import ON_BOTH_REDIS, Topics, consume
from tests.events import listing, order, photo_bytes
from tests.polling import wait_until

pytestmark = pytest.mark.integration

# Photos -> the model's categories: produce, but milk and oat milk are dairy.
PRODUCTS = {
    "lemon": "Lemon",
    "lime": "Lime",
    "cucumber": "Cucumber",
    "zucchini": "Zucchini",
    "banana": "Banana",
    "orange": "Orange",
    "pineapple": "Pineapple",
    "milk": "Arla-Standard-Milk",
    "oat": "Oatly-Oat-Milk",
    "apple": "Granny-Smith",  # listed, never ordered: the cold start
}


def send_all(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def orders(pid: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Planted pairs with noise, a best seller, and one big basket."""
    noise = ["banana", "orange", "pineapple", "milk"]
    msgs = []
    for i in range(6):
        lines = [(pid["lemon"], 1, 0.5), (pid["lime"], 1, 0.4), (pid[noise[i % 4]], 1, 1.0)]
        msgs.append(order(f"lemon-{i}", lines))
        lines = [(pid["cucumber"], 1, 0.8), (pid["zucchini"], 2, 0.9), (pid[noise[-i % 4]], 1, 1.0)]
        msgs.append(order(f"cucumber-{i}", lines))
    msgs.append(order("bananas", [(pid["banana"], 40, 0.3), (pid["milk"], 1, 1.3)]))
    everything = [(p, 1, 1.0) for name, p in pid.items() if name != "apple"]
    msgs.append(order("big", everything + [(f"unlisted-{i}", 1, 1.0) for i in range(4)]))
    return msgs


def http_recommend(port: int, product_id: str, **query: str) -> Any:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    url = f"http://127.0.0.1:{port}/recommend/{product_id}?{qs}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


async def python_recommend(s: Settings, product_id: str, **kw: Any) -> Recommendations:
    cache = LabelCache.from_settings(s)
    try:
        return await Recommender(cache, RecommendConfig.from_settings(s)).recommend(
            product_id, **kw
        )
    finally:
        await cache.close()


@ON_BOTH_REDIS
def test_planted_pairs_come_first_and_a_new_product_gets_its_category(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker = worker_factory(VITRINE_RECOMMEND_MAX_MEMBERS="10").start()
    # The worker's Redis and keys, for the Python API and the checks below.
    s = topics.settings()
    photos = dict(photo_bytes())
    pid = {name: f"rec-{topics.suffix}-{name}" for name in PRODUCTS}
    send_all(
        producer,
        topics.product_images,
        [listing(pid[name], photos[cls]) for name, cls in PRODUCTS.items()],
    )
    records: list[Any] = consume(topics.bootstrap, topics.product_labels, expect=len(PRODUCTS))
    labels = [codec.decode_product_labelled(r.value) for r in records]
    category = {lab.product_id: lab.category for lab in labels}
    assert len(category) == len(PRODUCTS), worker.tail()
    msgs = orders(pid)
    send_all(producer, topics.orders, msgs)
    # Counted once the view builder has applied every enriched order to the sets.
    applied = (
        f'vitrine_view_records_applied_total{{topic="{topics.orders_enriched}"}} {len(msgs)}.0'
    )
    wait_until(lambda: applied in worker.metrics(), "every enriched order counted")

    # Through the worker's web port: the planted partner first.
    port = worker.web_port
    body = http_recommend(port, pid["lemon"], region="eu-north", k="5")["items"]
    assert body[0]["product_id"] == pid["lime"], body
    assert body[0]["source"] == "bought_together"
    cucumber = http_recommend(port, pid["cucumber"], region="eu-north", k="3")
    assert cucumber["items"][0]["product_id"] == pid["zucchini"], cucumber

    # Through the Python API.
    lime = asyncio.run(python_recommend(s, pid["lime"], region="eu-north", k=3))
    assert lime.items[0].product_id == pid["lemon"]

    # The apple was never ordered: its category's best sellers in the region, no dairy.
    apple = asyncio.run(python_recommend(s, pid["apple"], region="eu-north", k=4))
    assert apple.category == category[pid["apple"]] == "produce"
    assert [r.source for r in apple.items] == ["popular_in_category"] * 4
    assert apple.items[0].product_id == pid["banana"]
    assert all(category[r.product_id] == "produce" for r in apple.items), apple
    assert http_recommend(port, pid["apple"], region="eu-north", k="4")["items"] == [
        {"product_id": r.product_id, "score": pytest.approx(r.score, rel=0.01), "source": r.source}
        for r in apple.items
    ]

    # Bounded, and state (no TTL, never evicted): the big basket gave the lemon 12
    # partners, 10 kept.
    key = f"{s.redis.key_prefix}:rec:{pid['lemon']}"
    with topics.redis_client() as client:
        assert client.zcard(key) == 10
        assert client.ttl(key) == -1
    with pytest.raises(urllib.error.HTTPError) as bad:
        http_recommend(port, pid["lemon"], k="0")
    assert bad.value.code == 400
