"""Every Kafka codec in and out, from kafka-python and from kcat (librdkafka), on a real worker.

Real producers compress: librdkafka clients and many Java producers default to
lz4, snappy or zstd. One batch the worker cannot read used to stop it for good
(aiokafka raised ``UnsupportedCodecError`` from the fetcher on every restart).
Here each codec's batches go to the worker's image and order topics, from
kafka-python and from ``kcat``, and every event must come out labelled or
enriched, read back by kafka-python from the worker's own compressed output.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import codec
from streams.worker.web import worker_ready
from tests.conftest import Topics, consume
from tests.events import listing, order, photo_bytes

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CLIENT = 3


def kcat_publish(
    bootstrap: str, topic: str, codec_name: str, msgs: list[tuple[bytes, bytes]]
) -> None:
    """Publish ``msgs`` with kcat, compressed with ``codec_name``, in one produce batch."""
    lines = b"".join(k + b"\t" + v + b"\n" for k, v in msgs)
    subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", topic, "-z", codec_name, "-K", "\t",
         "-X", "linger.ms=50", "-X", "message.max.bytes=16777216"],
        input=lines, check=True, timeout=60,
    )  # fmt: skip


def test_kcat_is_installed() -> None:
    """setup.sh installs kcat; without it the outside-client half below would not run."""
    assert shutil.which("kcat"), "kcat missing: deploy/local/setup.sh installs it with apt-get"


def test_every_codec_from_kafka_python_and_kcat_is_labelled_and_enriched(
    topics: Topics, worker_factory: Any
) -> None:
    worker = worker_factory().start()
    photos = photo_bytes()
    sent_images: dict[str, str] = {}  # event id -> "client/codec"
    sent_orders: dict[str, str] = {}
    sent_keys: dict[bytes, str] = {}  # record key -> "client/codec", to place dead letters
    n = 0
    for codec_name in CODECS:
        for client in ("kafka-python", "kcat"):
            tag = f"{client}/{codec_name}"
            images, orders = [], []
            for _ in range(PER_CLIENT):
                name, data = photos[n % len(photos)]
                pid = f"p{n}-{name}"
                images.append(listing(pid, data, event_id=f"img-{n}"))
                orders.append(order(f"o{n}", [(pid, 1, 2.5)], event_id=f"ord-{n}"))
                sent_images[f"img-{n}"] = tag
                sent_orders[f"ord-{n}"] = tag
                sent_keys[images[-1][0]] = sent_keys[orders[-1][0]] = tag
                n += 1
            if client == "kcat":
                kcat_publish(topics.bootstrap, topics.product_images, codec_name, images)
                kcat_publish(topics.bootstrap, topics.orders, codec_name, orders)
                continue
            producer = KafkaProducer(
                bootstrap_servers=topics.bootstrap,
                compression_type=codec_name,
                linger_ms=50,
                max_request_size=16 * 1024 * 1024,
            )
            try:
                for key, value in images:
                    producer.send(topics.product_images, key=key, value=value)
                for key, value in orders:
                    producer.send(topics.orders, key=key, value=value)
                producer.flush()
            finally:
                producer.close()

    labelled = consume(topics.bootstrap, topics.product_labels, expect=n, timeout_s=180)
    enriched = consume(topics.bootstrap, topics.orders_enriched, expect=n, timeout_s=120)
    image_outs = Counter(codec.decode_product_labelled(r.value).event_id for r in labelled)
    order_outs = Counter(codec.decode_enriched_order(r.value).event_id for r in enriched)
    got_images, got_orders = set(image_outs), set(order_outs)
    missing = Counter(sent_images[e] for e in set(sent_images) - got_images)
    missing += Counter(sent_orders[e] for e in set(sent_orders) - got_orders)
    dead = consume(topics.bootstrap, topics.product_images_dlq, expect=0, timeout_s=2)
    dead += consume(topics.bootstrap, topics.orders_dlq, expect=0, timeout_s=2)
    # The ledger per client and codec, for the record (`pytest -s`).
    outs = image_outs + order_outs
    dead_by_tag = Counter(sent_keys.get(r.key, "?") for r in dead)
    for tag in dict.fromkeys(sent_images.values()):
        ids = [e for e, t in {**sent_images, **sent_orders}.items() if t == tag]
        print(
            f"ledger {tag}: sent {len(ids)}, received {sum(e in outs for e in ids)}, "
            f"dead-lettered {dead_by_tag[tag]}, "
            f"duplicated {sum(max(0, outs[e] - 1) for e in ids)}"
        )
    assert not missing, f"events not processed, by client/codec: {dict(missing)}\n{worker.tail()}"
    assert worker.running, worker.tail()
    assert dead == []


def test_a_batch_the_worker_cannot_read_pauses_its_partition_not_the_worker(
    topics: Topics, worker_factory: Any, tmp_path: Any
) -> None:
    """A worker whose aiokafka lacks the lz4 library meets an lz4 batch of listings.

    (What crash-looped workers before the codecs were dependencies; simulated
    by a ``sitecustomize`` that hides the library from this worker only.) The
    listings around it are labelled, the worker stays up and says it is not
    ready, one log line names the partition and offset, and the metric is set.
    """
    (tmp_path / "sitecustomize.py").write_text(
        "import aiokafka.codec\naiokafka.codec.has_lz4 = lambda: False\n"
    )
    worker = worker_factory(PYTHONPATH=str(tmp_path)).start()
    photos = photo_bytes()

    def send(partition: int, n0: int, n: int, compression: str | None = None) -> list[str]:
        p = KafkaProducer(bootstrap_servers=topics.bootstrap, compression_type=compression,
                          linger_ms=20, max_request_size=16 * 1024 * 1024)  # fmt: skip
        ids = []
        for i in range(n0, n0 + n):
            name, data = photos[i % len(photos)]
            key, value = listing(f"u{i}-{name}", data, event_id=f"u-{i}")
            p.send(topics.product_images, key=key, value=value, partition=partition)
            ids.append(f"u-{i}")
        p.flush()
        p.close()
        return ids

    readable = send(1, 0, 3) + send(0, 3, 4)
    send(1, 7, 2, "lz4")
    send(1, 9, 2)  # behind the batch: not read until the way out is taken
    labelled = consume(topics.bootstrap, topics.product_labels, expect=len(readable),
                       timeout_s=120)  # fmt: skip
    assert {codec.decode_product_labelled(r.value).event_id for r in labelled} == set(readable)
    deadline = time.monotonic() + 60
    while "cannot read" not in worker.tail(400) and time.monotonic() < deadline:
        time.sleep(0.5)
    lines = [ln for ln in worker.tail(400).splitlines() if "cannot read" in ln]
    assert len(lines) == 1, worker.tail()
    assert f"{topics.product_images}[1] at offset 3" in lines[0]
    assert "lz4" in lines[0]
    assert worker.running
    assert not worker_ready("127.0.0.1", worker.web_port)
    gauge = (f'vitrine_unreadable_partitions{{partition="1",topic="{topics.product_images}"}}'
             " 1.0")  # fmt: skip
    assert gauge in worker.metrics()
