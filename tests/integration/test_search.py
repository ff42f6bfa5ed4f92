"""Visual search on the real stack: a near copy finds its product; restarts and peers agree.

A worker labels a few listings and publishes their descriptors to
product-embeddings; ``POST /similar`` with a re-cropped, re-encoded copy of one
photo puts that product first. Then the worker stops, and two fresh workers
read the topic into their own indexes: both answer the same, and neither runs
a single image through the model (``vitrine_images_inferred_total``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import msgspec
import numpy as np
import pytest
from kafka import KafkaProducer

from schemas import codec
from tests.conftest import Topics, consume
from tests.events import listing, photo_bytes

pytestmark = pytest.mark.integration

PHOTOS = ["Lemon", "Banana", "Pineapple", "Arla-Standard-Milk", "Cabbage", "Kiwi", "Avocado"]


def near_copy(jpeg: bytes) -> bytes:
    """The same photo cropped by 6% a side, scaled to 80% and saved at JPEG quality 70."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    img = img[h * 6 // 100 : h * 94 // 100, w * 6 // 100 : w * 94 // 100]
    img = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    ok, out = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return out.tobytes()


def http(port: int, path: str, data: bytes | None = None) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def wait_indexed(port: int, product_id: str, n: int, timeout_s: float = 90.0) -> Any:
    """``GET /similar/{product_id}`` once the worker's index holds ``n`` products."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = http(port, f"/similar/{product_id}?k=10")
            if last["indexed"] == n:
                return last
        except urllib.error.HTTPError as exc:  # 503 loading, 404 not indexed yet
            last = exc.code
        time.sleep(0.3)
    raise AssertionError(f"index never held {n} products: {last}")


def inferred(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("vitrine_images_inferred_total "):
            return float(line.split()[1])
    raise AssertionError("vitrine_images_inferred_total not exposed")


def test_near_copy_finds_its_product_and_restarted_workers_agree(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, tmp_path: Path
) -> None:
    photos = dict(photo_bytes())
    pid = {cls: f"srch-{topics.suffix}-{cls}" for cls in PHOTOS}
    first = worker_factory().start()
    for cls in PHOTOS:
        key, value = listing(pid[cls], photos[cls])
        producer.send(topics.product_images, key=key, value=value)
    producer.flush()
    labels = consume(topics.bootstrap, topics.product_labels, expect=len(PHOTOS))
    assert len({r.key for r in labels}) == len(PHOTOS), first.tail()  # type: ignore[attr-defined]

    # One descriptor per product on the compacted topic, of the worker's model.
    records: list[Any] = consume(topics.bootstrap, topics.product_embeddings, expect=len(PHOTOS))
    embeddings = {r.key.decode(): codec.decode_product_embedding(r.value) for r in records}
    assert set(embeddings) == set(pid.values())
    assert {e.dims for e in embeddings.values()} == {128}

    before = wait_indexed(first.web_port, pid["Lemon"], len(PHOTOS))
    assert pid["Lemon"] not in [i["product_id"] for i in before["items"]]
    assert len(before["items"]) == len(PHOTOS) - 1

    query = near_copy(photos["Lemon"])
    found = http(first.web_port, "/similar?k=3", data=query)
    assert found["items"][0]["product_id"] == pid["Lemon"], found
    assert found["items"][0]["score"] > 0.8, found
    assert found["items"][0]["category"] == embeddings[pid["Lemon"]].category
    # The command line asks the same worker.
    (tmp_path / "query.jpg").write_bytes(query)
    cli = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "similar", str(tmp_path / "query.jpg"),
         "--k", "3", "--json", "--url", f"http://127.0.0.1:{first.web_port}"],
        env=topics.env(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(cli.stdout)["items"] == found["items"]
    milk = http(
        first.web_port, "/similar?k=5&category=dairy", data=near_copy(photos["Arla-Standard-Milk"])
    )
    assert [i["product_id"] for i in milk["items"]] == [pid["Arla-Standard-Milk"]], milk
    # A photo over aiohttp's default 1 MiB body limit (up to VITRINE_MAX_IMAGE_BYTES).
    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    big = cv2.imencode(".png", noise)[1].tobytes()
    assert len(big) > 2**20
    assert len(http(first.web_port, "/similar?k=2", data=big)["items"]) == 2
    with pytest.raises(urllib.error.HTTPError) as bad:
        http(first.web_port, "/similar?k=3", data=b"not an image")
    assert bad.value.code == 422
    with pytest.raises(urllib.error.HTTPError) as missing:
        http(first.web_port, "/similar/no-such-product")
    assert missing.value.code == 404
    assert inferred(first.metrics()) == len(PHOTOS)
    assert first.stop() == 0, first.tail()
    assert "Unclosed" not in first.tail(400)

    # A restart, and a peer beside it: both rebuild the index from Kafka alone.
    second, third = worker_factory(), worker_factory()
    second.start()
    third.start()
    for worker in (second, third):
        after = wait_indexed(worker.web_port, pid["Lemon"], len(PHOTOS))
        assert [i["product_id"] for i in after["items"]] == [
            i["product_id"] for i in before["items"]
        ]
        again = http(worker.web_port, "/similar?k=3", data=query)
        assert [i["product_id"] for i in again["items"]] == [
            i["product_id"] for i in found["items"]
        ]
        assert inferred(worker.metrics()) == 0, worker.tail()


def counted(metrics: str, outcome: str) -> float:
    prefix = f'vitrine_search_updates_total{{outcome="{outcome}"}} '
    return next((float(x.split()[1]) for x in metrics.splitlines() if x.startswith(prefix)), 0.0)


def test_snapshot_start_reads_only_the_records_after_it(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, tmp_path: Path
) -> None:
    photos = dict(photo_bytes())
    names = ["Lemon", "Banana", "Kiwi"]
    pid = {cls: f"snap-{topics.suffix}-{cls}" for cls in names}
    snapshot = str(tmp_path / "search-snapshot")
    first = worker_factory(VITRINE_SEARCH_SNAPSHOT_DIR=snapshot).start()
    for cls in names:
        producer.send(topics.product_images, *reversed(listing(pid[cls], photos[cls])))
    producer.flush()
    wait_indexed(first.web_port, pid["Lemon"], len(names))
    assert first.stop() == 0, first.tail()
    assert "saved to" in first.tail(400)

    # While no worker runs: one product is delisted (a tombstone), one more appears.
    records: list[Any] = consume(topics.bootstrap, topics.product_embeddings, expect=len(names))
    lemon = next(r.value for r in records if r.key.decode() == pid["Lemon"])
    new_id = f"snap-{topics.suffix}-lemon-again"
    again = msgspec.structs.replace(codec.decode_product_embedding(lemon), product_id=new_id)
    producer.send(topics.product_embeddings, key=pid["Kiwi"].encode(), value=None)
    producer.send(topics.product_embeddings, key=new_id.encode(), value=codec.encode(again))
    producer.flush()

    second = worker_factory(VITRINE_SEARCH_SNAPSHOT_DIR=snapshot).start()
    body = wait_indexed(second.web_port, new_id, len(names))
    assert body["items"][0]["product_id"] == pid["Lemon"], body
    metrics = second.metrics()
    # The snapshot's three products were not read again: only the two new records.
    assert counted(metrics, "indexed") == 1, second.tail()
    assert counted(metrics, "removed") == 1
    assert inferred(metrics) == 0
    assert "from snapshot" in second.tail(400)
