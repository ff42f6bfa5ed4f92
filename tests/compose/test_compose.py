"""The docker-compose stack, running: events in from the host, results out, restarts, scraping.

Run by ``make compose-test`` (``deploy/compose/stack.sh test``), which builds
the images, starts the stack and waits for health before pytest and tears it
down after. Marker ``compose``: deselected from the default run (pyproject's
addopts), since it needs a container engine and minutes of image builds.

The stack's worker consumes the fixed topic names of the compose file, so each
test uses product and order ids of its own (a uuid) and reads only those back.
Everything is reached on 127.0.0.1 through the published ports
(``*_HOST_PORT``, the compose file's defaults unless set).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from schemas import codec
from streams.worker.healthcheck import worker_ready
from tests.events import listing, order, photo_bytes
from tests.polling import wait_until

pytestmark = pytest.mark.compose

HOST = "127.0.0.1"
KAFKA = f"{HOST}:{os.environ.get('KAFKA_HOST_PORT', '9094')}"
REDIS_PORT = int(os.environ.get("REDIS_HOST_PORT", "6380"))
WORKER_PORT = int(os.environ.get("WORKER_HOST_PORT", "6066"))
PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_HOST_PORT", "9090"))
ENGINE = os.environ.get("CONTAINER_ENGINE", "podman")
PROJECT = os.environ.get("STACK_PROJECT", "vitrine")


@pytest.fixture
def producer() -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5, max_request_size=16 << 20)
    yield p
    p.close()


def send(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def read_keys(topic: str, keys: set[bytes], *, timeout_s: float) -> list[tuple[bytes, bytes]]:
    """Every record of ``topic`` whose key is in ``keys``, read from the start until each key
    has been seen once (or the timeout; the caller asserts on what came back)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=KAFKA,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
        max_partition_fetch_bytes=16 << 20,
    )
    out: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not keys <= {k for k, _ in out}:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in recs if r.key in keys)
        # Whatever else is already there (redeliveries) counts too.
        for recs in consumer.poll(timeout_ms=1000).values():
            out.extend((r.key, r.value) for r in recs if r.key in keys)
        return out
    finally:
        consumer.close()


def worker_container() -> str:
    out = subprocess.run(
        [
            ENGINE,
            "ps",
            "-a",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=worker",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert len(out) == 1, f"expected one worker container of project {PROJECT}, found {out}"
    return out[0]


def http_json(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as resp:
        return json.load(resp)


def test_a_listing_and_an_order_from_the_host_come_out_labelled_and_enriched(
    producer: KafkaProducer,
) -> None:
    run = uuid.uuid4().hex[:8]
    photos = dict(photo_bytes())
    banana, lemon, order_id = f"banana-{run}", f"lemon-{run}", f"o-{run}"
    send(
        producer,
        "product-images",
        [listing(banana, photos["Banana"]), listing(lemon, photos["Lemon"])],
    )
    labelled = read_keys("product-labels", {banana.encode(), lemon.encode()}, timeout_s=90)
    labels = {k.decode(): codec.decode_product_labelled(v) for k, v in labelled}
    assert set(labels) == {banana, lemon}
    assert all(lab.category for lab in labels.values())

    send(producer, "orders", [order(order_id, [(banana, 3, 0.5), (lemon, 1, 0.8)])])
    (enriched_raw, *_) = [
        v for _, v in read_keys("orders-enriched", {order_id.encode()}, timeout_s=90)
    ]
    enriched = codec.decode_enriched_order(enriched_raw)
    items = {it.product_id: it for it in enriched.items}
    assert items[banana].category == labels[banana].category
    assert items[banana].category_status == "labelled"
    assert items[lemon].category == labels[lemon].category
    assert enriched.order_total == pytest.approx(2.3)


def test_the_worker_killed_and_restarted_loses_nothing(producer: KafkaProducer) -> None:
    run = uuid.uuid4().hex[:8]
    photos = [jpeg for _, jpeg in photo_bytes()]
    before = [f"k{run}-{i}" for i in range(30)]
    during = [f"k{run}-{i}" for i in range(30, 60)]
    send(
        producer,
        "product-images",
        [listing(p, photos[i % len(photos)]) for i, p in enumerate(before)],
    )
    # Some of the first half is out: the worker is mid-stream when it is killed.
    read_keys("product-labels", {before[0].encode()}, timeout_s=90)
    worker = worker_container()
    subprocess.run(
        [ENGINE, "kill", "--signal", "KILL", worker], check=True, capture_output=True, timeout=60
    )
    send(
        producer,
        "product-images",
        [listing(p, photos[i % len(photos)]) for i, p in enumerate(during)],
    )
    t0 = time.monotonic()
    subprocess.run([ENGINE, "start", worker], check=True, capture_output=True, timeout=60)
    wait_until(lambda: worker_ready(HOST, WORKER_PORT), "the restarted worker's /ready", 120)
    print(f"worker ready {time.monotonic() - t0:.1f} s after start")

    sent = before + during
    out = read_keys("product-labels", {p.encode() for p in sent}, timeout_s=120)
    counts = Counter(k.decode() for k, _ in out)
    print(f"{len(sent)} listings in, {len(out)} labels out ({len(counts)} products)")
    missing = {p.encode() for p in set(sent) - set(counts)}
    if missing:
        # Where did they go? Dead letters and the review topic, for the report.
        elsewhere = {
            topic: sorted(k.decode() for k, _ in read_keys(topic, missing, timeout_s=5))
            for topic in ("product-images.dlq", "product-review")
        }
        pytest.fail(f"no label for {sorted(k.decode() for k in missing)}; found in {elsewhere}")


def test_prometheus_scrapes_the_worker() -> None:
    def worker_up() -> bool:
        try:
            body = http_json(
                PROMETHEUS_PORT, "/api/v1/query?query=up%7Bjob%3D%22vitrine-worker%22%7D"
            )
        except OSError:
            return False
        assert isinstance(body, dict)
        results = body["data"]["result"]
        return bool(results) and all(r["value"][1] == "1" for r in results)

    wait_until(worker_up, "up{job='vitrine-worker'} == 1 in Prometheus", 90)


def test_redis_keeps_state_and_evicts_only_the_cache(producer: KafkaProducer) -> None:
    # As the native stack (streams/tools/stack.py): no persistence, bounded
    # memory, volatile-lru: only keys with a TTL (image cache, claims) can go.
    r = redis.Redis(host=HOST, port=REDIS_PORT, socket_timeout=5)
    try:
        config = r.config_get("*")
        assert config["maxmemory-policy"] == "volatile-lru"
        assert int(config["maxmemory"]) == 512 * 1024 * 1024
        assert config["save"] == ""
        assert config["appendonly"] == "no"

        product = f"ttl-{uuid.uuid4().hex[:8]}"
        send(producer, "product-images", [listing(product, photo_bytes()[0][1])])
        key = f"vitrine:product:{product}"
        wait_until(lambda: r.exists(key), f"{key} in Redis", 90)
        # State has no TTL, so volatile-lru never evicts it.
        assert r.ttl(key) == -1
    finally:
        r.close()
