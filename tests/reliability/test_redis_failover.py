"""A Redis Cluster master killed mid-stream: its replica takes over, and the worker rides it out.

The cluster is this module's own (3 masters, 3 replicas, ``cluster-node-timeout``
1 s); Kafka is the session's. A master is SIGKILLed while the worker is
labelling listings and enriching orders; more of both are published while its
replica is being promoted. Every listing and every order must come out, the
failover must cost retries only (no cache outage, no order enriched with
``cache_unavailable``). A cluster none of whose nodes answers, though, is an
outage like one Redis down: bypassed at once, not retried for the failover time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import codec
from streams.tools.bench.pipeline import unique_images
from streams.tools.redis_cluster import RedisClusterStack
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.imageresult import ImageResult
from tests.conftest import LocalStack, consume, make_topics
from tests.events import listing, order, photo_bytes

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

LISTINGS = 48  # per phase
ORDERS = 120  # per phase


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterStack]:
    cluster = RedisClusterStack(tmp_path_factory.mktemp("failover-cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


def publish(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def ids_out(bootstrap: str, topic: str, decode: Any, n: int, timeout_s: float) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = Counter(
            decode(r.value).event_id
            for r in consume(bootstrap, topic, expect=10**9, timeout_s=2)  # type: ignore[attr-defined]
        )
        if len(got) >= n or time.monotonic() > deadline:
            return got


def test_a_master_killed_mid_stream_costs_retries_only(
    kafka_stack: LocalStack,
    own_cluster: RedisClusterStack,
    producer: KafkaProducer,
    tmp_path: Path,
) -> None:
    topics = make_topics(kafka_stack, cluster=own_cluster)
    worker = WorkerProcess(
        topics.env(VITRINE_REDIS_CLUSTER_FAILOVER_MS="15000", VITRINE_MAX_BATCH_SIZE="8"),
        tmp_path / "worker.log",
        web_port=free_ports(1)[0],
    )
    photos = [data for _, data in photo_bytes()]
    # Products labelled before anything happens, that every order buys.
    known = [listing(f"known-{i}", img, event_id=f"known-{i}") for i, img in enumerate(photos[:8])]
    images = list(unique_images(photos, 2 * LISTINGS, topics.suffix))
    fresh = [listing(f"l-{i}", img, event_id=f"l-{i}") for i, img in enumerate(images)]
    sold = [
        order(f"o-{i}", [(f"known-{i % 8}", 1, 2.0), (f"known-{(i + 3) % 8}", 2, 1.0)],
              event_id=f"o-{i}")
        for i in range(2 * ORDERS)
    ]  # fmt: skip
    try:
        worker.start()
        publish(producer, topics.product_images, known)
        labelled = ids_out(
            topics.bootstrap, topics.product_labels, codec.decode_product_labelled, 8, 120
        )
        assert len(labelled) == 8, worker.tail()

        publish(producer, topics.product_images, fresh[:LISTINGS])
        publish(producer, topics.orders, sold[:ORDERS])
        while len(consume(topics.bootstrap, topics.product_labels, expect=16, timeout_s=1)) < 16:
            pass
        killed = own_cluster.kill_master()
        before = consume(topics.bootstrap, topics.product_labels, expect=0, timeout_s=1)
        assert len(before) < 8 + len(fresh), "the kill should land mid-stream"
        # More of both while the replica is promoted.
        publish(producer, topics.product_images, fresh[LISTINGS:])
        publish(producer, topics.orders, sold[ORDERS:])
        t0 = time.monotonic()
        own_cluster.wait_ok(60)
        print(f"\nmaster {killed.address} killed; cluster ok again after "
              f"{time.monotonic() - t0:.1f} s")  # fmt: skip

        labels = ids_out(
            topics.bootstrap,
            topics.product_labels,
            codec.decode_product_labelled,
            8 + len(fresh),
            240,
        )
        enriched_records = consume(topics.bootstrap, topics.orders_enriched, expect=len(sold))
        enriched = [codec.decode_enriched_order(r.value) for r in enriched_records]  # type: ignore[attr-defined]
        got_orders = Counter(o.event_id for o in enriched)
        print(f"listings in {8 + len(fresh)}, labelled {len(labels)}; "
              f"orders in {len(sold)}, enriched {len(got_orders)}")  # fmt: skip
        assert set(labels) == {k.decode() for k, _ in known + fresh}, worker.tail()
        assert set(got_orders) == {k.decode() for k, _ in sold}, worker.tail()
        reasons = Counter(it.unknown_reason for o in enriched for it in o.items)
        assert reasons == Counter({None: 2 * len(enriched)}), reasons
        metrics = worker.metrics()
        assert "vitrine_redis_up 1.0" in metrics
        assert "Redis unreachable" not in worker.log_path.read_text(), worker.tail()
        assert worker.running
    finally:
        worker.stop()


def test_a_cluster_none_of_whose_nodes_answers_is_an_outage_not_a_long_retry(
    own_cluster: RedisClusterStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs last here: it kills every node. The cache steps aside as for one Redis."""

    async def run() -> None:
        cache = LabelCache(
            own_cluster.url, ttl_s=60, timeout_ms=250, prefix="dead", cluster=True,
            # A retry for the failover time would outlast the test's timeout.
            cluster_failover_ms=600_000,
        )  # fmt: skip
        try:
            result = ImageResult(
                labels=(("x", 1.0),), category="c", score=1.0, model_name="m", model_version="v"
            )
            assert await cache.put({"cd" * 32: result})
            for node in own_cluster.nodes:
                if node.proc is not None and node.alive:
                    node.proc.kill()
                    node.proc.wait()
            assert await cache.get_images(["ab" * 32], "m", "v") == [None]
            assert not cache.available
            with pytest.raises(CacheUnavailable):
                await cache.get_products(["a"])
        finally:
            await cache.close()

    asyncio.run(run())
    outages = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(outages) == 1
