"""The review console in a real browser (Debian's chromium) against a real worker, Kafka and Redis.

One worker, one console (``python -m streams.console``) and one browser serve
the whole module; each test lists its own products and finds their cards by
filtering on its own sellers. ``VITRINE_SCREENSHOT_OUT=docs/images/console.png``
saves the screenshot the README shows (see docs/REVIEW.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from kafka import KafkaProducer
from playwright.sync_api import sync_playwright

from schemas import codec
from schemas.records import ProductLabelled
from streams.tools.events import make_listing
from streams.tools.stack import free_ports
from streams.tools.workerproc import WorkerProcess
from streams.worker.state import decode_product_state
from tests.conftest import LocalStack, Topics, consume, make_topics
from tests.events import order, photo_bytes
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "console-test-secret-0123"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHOTOS = dict(photo_bytes())


@pytest.fixture(scope="module")
def mtopics(kafka_stack: LocalStack) -> Topics:
    return make_topics(
        kafka_stack, compacted=("product_labels", "orders_enriched", "label_corrections")
    )


@pytest.fixture(scope="module")
def worker(mtopics: Topics, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("console-worker") / "worker.log"
    w = WorkerProcess(
        mtopics.env(VITRINE_ORDER_LABEL_WAIT_MS="300"), log, web_port=free_ports(1)[0]
    )
    try:
        yield w.start()
    finally:
        try:
            w.stop(timeout_s=30)
        finally:
            w.kill()


class ConsoleProcess:
    """``python -m streams.console`` on a port of its own, started again on the same one."""

    def __init__(self, topics: Topics, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = topics.env(
            VITRINE_CONSOLE_PORT=str(self.port),
            VITRINE_CONSOLE_SECRET=SECRET,
            VITRINE_CONSOLE_GROUP_ID=f"console-{topics.suffix}",
            # A killed console's partitions go to the next one after this long.
            VITRINE_KAFKA_SESSION_TIMEOUT_MS="6000",
            VITRINE_KAFKA_HEARTBEAT_INTERVAL_MS="2000",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsoleProcess:
        with self.log.open("ab") as out:
            self.proc = proc = subprocess.Popen(
                [sys.executable, "-m", "streams.console"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

        def healthy() -> bool:
            assert proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(healthy, "the console to start", timeout_s=60)
        return self

    def kill(self) -> None:
        """SIGKILL: no commit, no goodbye to the group."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def console_process(
    mtopics: Topics, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    proc = ConsoleProcess(mtopics, tmp_path_factory.mktemp("console") / "console.log")
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def console(console_process: ConsoleProcess) -> str:
    return console_process.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, console: str) -> Iterator[Any]:
    """A signed-in reviewer's page."""
    context = browser.new_context(base_url=console, viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.goto("/login")
    p.fill("input[name=reviewer]", "rev-9")
    p.fill("input[name=secret]", SECRET)
    p.click("button[type=submit]")
    p.wait_for_url(f"{console}/")
    yield p
    context.close()


def _listing(product_id: str, photo: str, seller: str, **fields: Any) -> tuple[bytes, bytes]:
    ev = make_listing(product_id, image=PHOTOS[photo], seller_id=seller)
    return product_id.encode(), codec.encode(msgspec.structs.replace(ev, **fields))


def _send(producer: KafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()


def _first(
    producer: KafkaProducer, topics: Topics, product_id: str, photo: str, seller: str
) -> None:
    """List the original of a photo and wait until it is labelled: copies come after it.

    Its product view is written once its label is on product-labels, after the
    batch's duplicate checks; polling Redis is quicker than reading the topic.
    """
    _send(producer, topics.product_images, [_listing(product_id, photo, seller)])
    with redis.Redis.from_url(topics.redis_url) as client:
        key = f"{topics.key_prefix}:product:{product_id}"
        wait_until(lambda: client.exists(key), f"{product_id} labelled", timeout_s=120)


def _cards(page: Any, query: str, expect: int, timeout_s: float = 120) -> list[Any]:
    """The cards of ``/?query`` once there are ``expect`` of them (reloading meanwhile)."""
    found: list[Any] = []

    def check() -> bool:
        page.goto(f"/?{query}")
        found[:] = page.query_selector_all("article.item")
        return len(found) >= expect

    wait_until(check, f"{expect} cards at /?{query}", timeout_s=timeout_s)
    return found


def _labels(topics: Topics, product_id: str, after: int = 0) -> ProductLabelled:
    """The product's latest label on product-labels, once it has more than ``after``."""
    found: list[ProductLabelled] = []

    def check() -> bool:
        out = consume(topics.bootstrap, topics.product_labels, expect=10_000, timeout_s=1)
        labels = [codec.decode_product_labelled(r.value) for r in out]
        found[:] = [lab for lab in labels if lab.product_id == product_id]
        return len(found) > after

    wait_until(check, f"a label of {product_id}", timeout_s=120)
    return found[-1]


def _image_loaded(page: Any, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_flagged_items_show_photos_and_a_correction_reaches_orders_and_relistings(
    page: Any, mtopics: Topics, producer: KafkaProducer, tmp_path: Path
) -> None:
    t = mtopics.suffix
    seller = f"m-{t}"
    _first(producer, mtopics, f"milk-a-{t}", "Arla-Standard-Milk", f"orig-{t}")
    _send(
        producer,
        mtopics.product_images,
        [
            _listing(f"milk-b-{t}", "Arla-Standard-Milk", seller, title="Milk 1 l"),
            _listing(f"banana-{t}", "Banana", seller, declared_category="dairy"),
        ],
    )
    [_, _] = cards = _cards(page, f"seller={seller}", 2)
    by_product = {c.get_attribute("data-product"): c for c in cards}
    dup = f"article[data-product='milk-b-{t}']"
    mismatch = f"article[data-product='banana-{t}']"
    wait_until(lambda: _image_loaded(page, f"{dup} figure:first-child img"), "the photo")
    assert page.locator(f"{dup} figure.dup img").count() == 1, page.inner_text("main")
    assert _image_loaded(page, f"{dup} figure.dup img"), "the original's photo beside it"
    wait_until(lambda: _image_loaded(page, f"{mismatch} img"), "the banana's photo")
    assert "hamming 0/64" in by_product[f"milk-b-{t}"].inner_text()
    assert f"orig-{t}" in by_product[f"milk-b-{t}"].inner_text()
    assert "declared dairy, predicted produce" in by_product[f"banana-{t}"].inner_text()
    assert page.locator(f"{mismatch} ol.labels li").count() == 5
    if out := os.environ.get("VITRINE_SCREENSHOT_OUT"):
        page.screenshot(path=out)

    # Relabel the banana as milk with the taxonomy search, then order it.
    search = page.locator(f"{mismatch} form.search input[name=label]")
    search.fill("Arla-Standard-Milk")
    with page.expect_navigation():
        search.press("Enter")
    decided = time.monotonic()
    with redis.Redis.from_url(mtopics.redis_url) as client:
        key = f"{mtopics.key_prefix}:product:banana-{t}"

        def corrected() -> bool:
            raw = client.get(key)
            return raw is not None and decode_product_state(raw).corrected_by == "rev-9"

        wait_until(corrected, "the product view to take the decision", timeout_s=10)
    _send(producer, mtopics.orders, [order(f"o-{t}", [(f"banana-{t}", 1, 0.3)])])

    def enriched() -> list[Any]:
        out = consume(mtopics.bootstrap, mtopics.orders_enriched, expect=10_000, timeout_s=0.5)
        orders = [codec.decode_enriched_order(r.value) for r in out]
        return [it for o in orders if o.order_id == f"o-{t}" for it in o.items]

    wait_until(enriched, "the order enriched", timeout_s=10)
    [item] = enriched()
    assert (item.category, item.category_status) == ("dairy", "corrected")
    assert time.monotonic() - decided < 10 + 1
    assert page.locator(mismatch).count() == 0, "decided: off the queue"

    # The same photo listed again gets the reviewer's label.
    _send(producer, mtopics.product_images, [_listing(f"banana-2-{t}", "Banana", f"x-{t}")])
    again = _labels(mtopics, f"banana-2-{t}")
    assert (again.labels[0].label, again.category, again.corrected_by) == (
        "Arla-Standard-Milk",
        "dairy",
        "rev-9",
    )


def test_a_dismissed_duplicate_is_not_flagged_again(
    page: Any, mtopics: Topics, producer: KafkaProducer
) -> None:
    t = mtopics.suffix
    seller = f"d-{t}"
    _first(producer, mtopics, f"cab-a-{t}", "Cabbage", f"cab-orig-{t}")
    _send(producer, mtopics.product_images, [_listing(f"cab-b-{t}", "Cabbage", seller)])
    _cards(page, f"seller={seller}", 1)
    before = _labels(mtopics, f"cab-b-{t}")
    assert "duplicate_image" in before.flags
    with page.expect_navigation():
        page.click(f"article[data-product='cab-b-{t}'] button[data-key=d]")
    corrections = consume(mtopics.bootstrap, mtopics.label_corrections, expect=10_000, timeout_s=1)
    assert f"cab-b-{t}|cab-a-{t}".encode() in {r.key for r in corrections}
    time.sleep(1.0)  # the worker's corrections view follows the topic
    # The same listing again: not flagged; a third seller's copy still is.
    _send(
        producer,
        mtopics.product_images,
        [_listing(f"cab-b-{t}", "Cabbage", seller), _listing(f"cab-c-{t}", "Cabbage", f"c-{t}")],
    )
    after = _labels(mtopics, f"cab-b-{t}", after=1)
    assert "duplicate_image" not in after.flags, after
    assert "duplicate_image" in _labels(mtopics, f"cab-c-{t}").flags


def test_no_session_no_csrf_no_script(
    browser: Any, page: Any, console: str, mtopics: Topics, producer: KafkaProducer
) -> None:
    t = mtopics.suffix
    seller = f"xss-{t}"
    title = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    # A review record that is not a ProductLabelled: skipped, counted, no crash.
    _send(producer, mtopics.product_review, [(b"junk", b"{not json")])
    _first(producer, mtopics, f"avo-a-{t}", "Avocado", f"avo-orig-{t}")
    _send(
        producer, mtopics.product_images, [_listing(f"avo-b-{t}", "Avocado", seller, title=title)]
    )
    [card] = _cards(page, f"seller={seller}", 1)
    assert card.query_selector("h2.title").inner_text() == title, "shown as text"
    assert page.evaluate("window.__pwned") is None
    assert "1 unreadable records skipped" in page.inner_text("header")
    response = page.goto(f"/?seller={seller}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

    form = {"product_id": f"avo-b-{t}", "event_id": "x", "decision": "not_a_product"}
    assert page.request.post("/decide", form=form, max_redirects=0).status == 403
    stranger = browser.new_context(base_url=console)
    try:
        assert stranger.request.post("/decide", form=form, max_redirects=0).status == 401
        assert stranger.request.get(f"/photo/{'0' * 64}", max_redirects=0).status == 401
        assert stranger.request.get("/", max_redirects=0).headers["location"] == "/login"
        bad = stranger.new_page()
        bad.goto("/login")
        bad.fill("input[name=reviewer]", "mallory")
        bad.fill("input[name=secret]", "guess")
        bad.click("button[type=submit]")
        assert "wrong name or secret" in bad.content()
    finally:
        stranger.close()
    assert page.locator(f"article[data-product='avo-b-{t}']").count() == 1, "still pending"


def test_twenty_items_reviewed_with_the_keyboard_alone(
    page: Any, mtopics: Topics, producer: KafkaProducer
) -> None:
    t = mtopics.suffix
    seller = f"kb-{t}"
    _first(producer, mtopics, f"kb-orig-{t}", "Cucumber", f"kb-first-{t}")
    msgs = [_listing(f"kb-{i}-{t}", "Cucumber", seller) for i in range(20)]
    _send(producer, mtopics.product_images, msgs)
    _cards(page, f"seller={seller}", 20)
    keys = ["a", "d", "c", "n", "2", "/"]
    for i in range(20):
        page.keyboard.press("j")
        page.keyboard.press("k")
        key = keys[i % len(keys)]
        if key == "/":  # search the taxonomy, then Enter relabels
            page.keyboard.press("/")
            page.keyboard.type("Arla-Standard-Milk")
            with page.expect_navigation():
                page.keyboard.press("Enter")
        else:
            with page.expect_navigation():
                page.keyboard.press(key)
        assert page.locator("article.item").count() == 19 - i
    corrections = consume(mtopics.bootstrap, mtopics.label_corrections, expect=10_000, timeout_s=1)
    decided = [codec.decode_label_correction(r.value) for r in corrections]
    mine = [c for c in decided if c.product_id.startswith("kb-") and c.reviewer == "rev-9"]
    assert len({c.product_id for c in mine}) == 20
    assert {c.decision for c in mine} == {
        "accept", "duplicate_dismissed", "duplicate_confirmed", "not_a_product", "relabel"
    }  # fmt: skip
    assert all(c.image_sha256 == hashlib.sha256(PHOTOS["Cucumber"]).hexdigest() for c in mine)
    assert "Arla-Standard-Milk" in {c.label for c in mine}, "the taxonomy search"


def test_a_killed_console_shows_the_undecided_items_again_and_no_decided_one(
    page: Any, console_process: ConsoleProcess, mtopics: Topics, producer: KafkaProducer
) -> None:
    t = mtopics.suffix
    seller = f"crash-{t}"
    _first(producer, mtopics, f"crash-orig-{t}", "Aubergine", f"crash-first-{t}")
    msgs = [_listing(f"crash-{i}-{t}", "Aubergine", seller) for i in range(2)]
    _send(producer, mtopics.product_images, msgs)
    _cards(page, f"seller={seller}", 2)
    with page.expect_navigation():
        page.click(f"article[data-product='crash-0-{t}'] button[data-key=a]")
    assert page.locator("article.item").count() == 1
    console_process.kill()
    console_process.start()
    cards = _cards(page, f"seller={seller}", 1, timeout_s=60)
    shown = [c.get_attribute("data-product") for c in cards]
    assert shown == [f"crash-1-{t}"], console_process.log.read_text()[-6000:]
