"""The streaming pipeline end to end on real Kafka and Redis, with a real worker process."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer

from inference.samples import samples
from inference.serving.engine import REVIEW_FLAGS
from schemas import codec
from schemas.deadletter import decode_headers
from schemas.sales import utc_rfc3339
from streams.tools.bench.pipeline import unique_images
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess
from streams.worker.state import ProductState, decode_product_state
from tests.conftest import ON_BOTH_REDIS, LocalStack, Topics, consume
from tests.events import SAMPLES_DIR, file_uri, listing, order, photo_bytes
from tests.not_products import not_products
from tests.polling import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def send_all(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def labels_by_event(records: list[Any]) -> dict[str, Any]:
    out = {}
    for r in records:
        lab = codec.decode_product_labelled(r.value)
        out[lab.event_id] = lab
    return out


def test_every_listing_labelled_once_and_bad_ones_dead_lettered(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker = worker_factory(VITRINE_IMAGE_FILE_ROOT=str(SAMPLES_DIR)).start()
    photos = photo_bytes()
    good: list[tuple[bytes, bytes]] = []
    for i, (name, data) in enumerate(photos):
        pid = f"p-{i}-{name}"
        if i % 3 == 0:
            good.append(listing(pid, uri=file_uri(SAMPLES_DIR / f"{name}_001.jpg"), event_id=pid))
        else:
            good.append(listing(pid, data, event_id=pid))
    bad = [
        listing("bad-truncated", photos[0][1][:500], event_id="bad-truncated"),
        listing("bad-escape", uri="file:///etc/passwd", event_id="bad-escape"),
        (b"bad-json", b"{not json"),
    ]
    send_all(producer, topics.product_images, good + bad)

    out = consume(topics.bootstrap, topics.product_labels, expect=len(good), timeout_s=120)
    labels = labels_by_event(out)
    assert set(labels) == {k.decode() for k, _ in good}, worker.tail()
    assert len(out) == len(good), "no duplicates in a clean run"
    assert all(not lab.cached for lab in labels.values())
    assert all(lab.model_name and lab.model_version for lab in labels.values())
    # Real model, real val photos: the banana is a banana, and every product gets its
    # category (produce, dairy, beverages), read from the worker's output.
    assert labels["p-0-Banana"].labels[0].label == "Banana"
    expected = {s.class_name: s.category for s in samples()}
    got = {pid.split("-", 2)[2]: lab for pid, lab in labels.items()}
    # Right, or sent to review (the vanilla yoghurt carton tips between dairy and
    # juice by CPU; see tests/unit/inference/serving/test_engine.py).
    wrong = {
        name: lab.category
        for name, lab in got.items()
        if lab.category != expected[name] and not set(REVIEW_FLAGS) & set(lab.flags)
    }
    assert set(got) == set(expected)
    assert wrong == {}, Counter(lab.category for lab in labels.values())

    dlq = consume(topics.bootstrap, topics.product_images_dlq, expect=len(bad), timeout_s=60)
    codes = {r.key.decode(): decode_headers(r.headers).error_code for r in dlq}
    assert codes == {
        "bad-truncated": "image.truncated",
        "bad-escape": "image.uri_refused",
        "bad-json": "json.invalid",
    }
    # The dead letter keeps the original bytes and says where they came from.
    by_key = {r.key: r for r in dlq}
    assert by_key[b"bad-json"].value == b"{not json"
    letter = decode_headers(by_key[b"bad-json"].headers)
    assert letter.source_topic == topics.product_images

    metrics = worker.metrics()
    assert (
        f'vitrine_events_in_total{{topic="{topics.product_images}"}} {len(good) + len(bad)}.0'
        in metrics
    )


@ON_BOTH_REDIS
def test_same_image_twice_is_inferred_once(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker_factory().start()
    _, data = photo_bytes()[0]
    send_all(producer, topics.product_images, [listing("first", data, event_id="e-first")])
    first = consume(topics.bootstrap, topics.product_labels, expect=1, timeout_s=60)
    send_all(producer, topics.product_images, [listing("second", data, event_id="e-second")])
    both = labels_by_event(consume(topics.bootstrap, topics.product_labels, expect=2, timeout_s=60))
    assert len(first) == 1
    assert both["e-first"].cached is False
    assert both["e-second"].cached is True
    assert both["e-second"].image_sha256 == both["e-first"].image_sha256
    assert both["e-second"].labels == both["e-first"].labels
    assert both["e-second"].timings.inference_ms == 0


def test_overlapping_image_batches_keep_input_order(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    """A fast batch (cache hit) behind a slow one (inference) waits its turn.

    Two batches are in flight at once; a product's labels must still come out,
    and its Redis entry be written, in the order its listings were published.
    """
    worker_factory(VITRINE_MAX_BATCH_SIZE="1", VITRINE_MAX_BATCH_LATENCY_MS="1").start()
    photos = [data for _, data in photo_bytes()]
    hit = photos[0]
    send_all(producer, topics.product_images, [listing("warm", hit, event_id="warm")])
    consume(topics.bootstrap, topics.product_labels, expect=1, timeout_s=60)
    # Same key (one partition): misses with fresh images alternate with hits.
    msgs = []
    for i, img in enumerate(unique_images(photos[1:], 6, "order")):
        msgs.append(listing("p-order", img, event_id=f"miss-{i}"))
        msgs.append(listing("p-order", hit, event_id=f"hit-{i}"))
    send_all(producer, topics.product_images, msgs)
    out = consume(topics.bootstrap, topics.product_labels, expect=1 + len(msgs), timeout_s=120)
    ordered = [codec.decode_product_labelled(r.value) for r in out if r.key == b"p-order"]
    expected = [f"{kind}-{i}" for i in range(6) for kind in ("miss", "hit")]
    assert [lab.event_id for lab in ordered] == expected
    assert [lab.cached for lab in ordered] == [False, True] * 6
    assert ordered[-1].category_score != ordered[-2].category_score  # the check can tell

    def state() -> ProductState | None:
        with redis.Redis.from_url(topics.redis_url) as client:
            raw = client.get(f"test-{topics.suffix}:product:p-order")
        return None if raw is None else decode_product_state(raw)

    # The product view takes the latest record, in offset order.
    wait_until(
        lambda: (
            (st := state()) is not None
            and st.score == pytest.approx(ordered[-1].category_score, abs=1e-5)
        ),
        "the product view to hold the last label",
    )


@ON_BOTH_REDIS
def test_orders_are_enriched_with_their_products_categories(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker_factory(VITRINE_ORDER_LABEL_WAIT_MS="300").start()
    photos = dict(photo_bytes())
    send_all(
        producer,
        topics.product_images,
        [listing("banana", photos["Banana"]), listing("lemon", photos["Lemon"])],
    )
    labels = {
        codec.decode_product_labelled(r.value).product_id: codec.decode_product_labelled(r.value)
        for r in consume(topics.bootstrap, topics.product_labels, expect=2, timeout_s=60)
    }
    send_all(
        producer,
        topics.orders,
        [
            order("o-1", [("banana", 3, 0.5), ("lemon", 1, 0.8)], region="eu-west"),
            order("o-2", [("ghost", 1, 9.99), ("banana", 2, 0.5)]),
        ],
    )
    out = consume(topics.bootstrap, topics.orders_enriched, expect=2, timeout_s=60)
    enriched = {
        codec.decode_enriched_order(r.value).order_id: codec.decode_enriched_order(r.value)
        for r in out
    }
    o1 = {it.product_id: it for it in enriched["o-1"].items}
    assert o1["banana"].category == labels["banana"].category
    assert o1["banana"].category_status == "labelled"
    assert o1["banana"].line_total == pytest.approx(1.5)
    assert o1["lemon"].category == labels["lemon"].category
    assert enriched["o-1"].order_total == pytest.approx(2.3)
    o2 = {it.product_id: it for it in enriched["o-2"].items}
    assert o2["ghost"].category == "unknown"
    assert o2["ghost"].unknown_reason == "not_labelled"
    assert o2["banana"].category_status == "labelled"

    # The windowed aggregate counts both orders per category x region.
    sales = consume(topics.bootstrap, topics.category_sales, expect=3, timeout_s=30)
    latest: dict[tuple[str, str], Any] = {}
    for r in sales:
        v = codec.decode_category_sales(r.value)
        assert r.key.decode() == f"{v.category}|{v.region}|{utc_rfc3339(v.window_start)}"
        latest[(v.category, v.region)] = v
    banana_cat = labels["banana"].category
    north = latest[(banana_cat, "eu-north")]
    assert north.units >= 2
    assert north.orders >= 1
    assert latest[("unknown", "eu-north")].revenue == pytest.approx(9.99)


def test_an_order_that_arrives_before_its_label_waits_for_it(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker_factory(VITRINE_ORDER_LABEL_WAIT_MS="8000").start()
    photos = dict(photo_bytes())
    send_all(producer, topics.orders, [order("early", [("late-product", 1, 2.0)])])
    send_all(producer, topics.product_images, [listing("late-product", photos["Pineapple"])])
    out = consume(topics.bootstrap, topics.orders_enriched, expect=1, timeout_s=60)
    item = codec.decode_enriched_order(out[0].value).items[0]
    assert item.category_status == "labelled", item


def test_bad_event_corpus_lands_in_the_dead_letter_topics_with_its_codes(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker_factory().start()
    cases = json.loads((ROOT / "tests/fixtures/bad_events/cases.json").read_text())["cases"]
    for case in cases:
        raw = case["value"]
        value = base64.b64decode(raw) if case["value_encoding"] == "base64" else raw.encode()
        topic = topics.product_images if case["topic"] == "product-images" else topics.orders
        producer.send(topic, key=case["name"].encode(), value=value)
    producer.flush()
    n_img = sum(1 for c in cases if c["topic"] == "product-images")
    got_img = consume(topics.bootstrap, topics.product_images_dlq, expect=n_img, timeout_s=90)
    got_ord = consume(topics.bootstrap, topics.orders_dlq, expect=len(cases) - n_img, timeout_s=60)
    codes = {r.key.decode(): decode_headers(r.headers).error_code for r in got_img + got_ord}
    assert codes == {c["name"]: c["expected_code"] for c in cases}
    assert Counter(r.key for r in got_img + got_ord).most_common(1)[0][1] == 1
    # Nothing from the corpus produced a label or an enriched order.
    assert consume(topics.bootstrap, topics.product_labels, expect=1, timeout_s=2) == []


def test_bad_image_corpus_is_dead_lettered_with_its_codes(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    """Every committed bad image, inline in a valid event, lands in the DLQ with its code."""
    worker = worker_factory().start()
    corpus = ROOT / "tests/fixtures/bad_images"
    expected = {
        row.split(",")[0]: row.split(",")[1]
        for row in (corpus / "expected.csv").read_text().splitlines()[1:]
        if row.strip()
    }
    msgs = []
    for name in expected:
        data = (corpus / name).read_bytes()
        if not data:
            continue  # an empty image is refused by the contract itself (see below)
        msgs.append(listing(name, data, event_id=name))
    msgs.append(listing("good", photo_bytes()[0][1], event_id="good"))
    send_all(producer, topics.product_images, msgs)
    dlq = consume(topics.bootstrap, topics.product_images_dlq, expect=len(msgs) - 1, timeout_s=90)
    codes = {r.key.decode(): decode_headers(r.headers).error_code for r in dlq}
    assert codes == {k: v for k, v in expected.items() if (corpus / k).stat().st_size}
    labels = consume(topics.bootstrap, topics.product_labels, expect=1, timeout_s=30)
    assert [codec.decode_product_labelled(r.value).event_id for r in labels] == ["good"]
    assert worker.running


def test_the_worker_creates_missing_topics_with_the_configured_partitions(
    kafka_stack: LocalStack, tmp_path: Path
) -> None:
    fresh = Topics(f"new{uuid.uuid4().hex[:8]}", kafka_stack.bootstrap, kafka_stack.redis_url, 3)
    worker = WorkerProcess(fresh.env(), tmp_path / "worker.log", web_port=free_ports(1)[0])
    try:
        worker.start()
        admin = KafkaAdminClient(bootstrap_servers=kafka_stack.bootstrap)
        try:
            described = admin.describe_topics(list(fresh.names.values()))
        finally:
            admin.close()
        assert {t["name"]: len(t["partitions"]) for t in described} == dict.fromkeys(
            fresh.names.values(), 3
        )
    finally:
        worker.stop()


def test_what_the_model_cannot_place_also_goes_to_review(
    topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    worker = worker_factory().start()
    photos = dict(photo_bytes())
    known = [listing("known-cabbage", photos["Cabbage"], event_id="known-cabbage")]
    strange = [
        listing(f"strange-{name}", data, event_id=f"strange-{name}")
        for name, data in not_products().items()
    ]
    send_all(producer, topics.product_images, known + strange)

    labelled = labels_by_event(
        consume(topics.bootstrap, topics.product_labels, expect=4, timeout_s=120)
    )
    assert set(labelled) == {"known-cabbage", *(f"strange-{n}" for n in not_products())}
    # Every label is out, so is every review copy (same batch, same send): wait for a
    # fourth record only briefly, to see that the cabbage does not come.
    review = labels_by_event(
        consume(topics.bootstrap, topics.product_review, expect=4, timeout_s=10)
    )
    assert set(review) == {f"strange-{n}" for n in not_products()}, worker.tail()
    for event_id, lab in review.items():
        assert "unknown_product" in lab.flags, (event_id, lab.flags)
        assert len(lab.labels) == 5  # its top-5, for whoever reviews it
        # The same record as on product-labels, plus where its listing is (for the console).
        assert lab.source is not None
        assert lab.source.topic == topics.product_images
        assert msgspec.structs.replace(lab, source=None) == labelled[event_id]
    assert not set(REVIEW_FLAGS) & set(labelled["known-cabbage"].flags)
