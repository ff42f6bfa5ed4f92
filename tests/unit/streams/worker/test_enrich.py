"""Order enrichment on a real Redis: labelled or unknown, held while the view is behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from schemas import codec
from streams.tools.demo import make_order
from streams.worker.cache import LabelCache
from streams.worker.consumed import ConsumedRecord, Rejected
from streams.worker.enrich import Enriched, OrderEnricher
from streams.worker.state import ProductState, encode_product_state

BANANA = ProductState(category="produce", score=0.97, model_version="v1", labelled_at_ms=1)
MILK = ProductState(category="dairy", score=0.88, model_version="v1", labelled_at_ms=2)


def _record(order_id: str, items: list[tuple[str, int, float]], offset: int) -> ConsumedRecord:
    value = codec.encode(make_order(order_id, items))
    # Published long ago: an order that would wait for its labels does not (a replay).
    return ConsumedRecord(order_id.encode(), value, "orders", 3, offset, timestamp_ms=0)


async def _write(cache: LabelCache, states: dict[str, ProductState]) -> None:
    encoded = {cache.product_key(p): encode_product_state(s) for p, s in states.items()}
    await cache.pipelined("test", lambda pipe: cache.queue_set_many(pipe, encoded))


class Coverage:
    """The view's coverage as a test scripts it: behind ``behind`` times, then caught up.

    When it catches up it first writes ``late`` into the view, as the view builder would.
    """

    def __init__(self, cache: LabelCache, behind: int, late: dict[str, ProductState]) -> None:
        self.cache, self.behind, self.late = cache, behind, late
        self.asked = 0

    async def mark(self) -> dict[int, int]:
        return {0: 10}

    async def covers(self, mark: dict[int, int]) -> bool:
        self.asked += 1
        if self.asked <= self.behind:
            return False
        if self.late:
            await _write(self.cache, self.late)
        return True


def _enricher(cache: LabelCache, **kw: object) -> OrderEnricher:
    return OrderEnricher(cache, label_wait_ms=60_000, retry_interval_ms=1, **kw)  # type: ignore[arg-type]


def test_lines_take_their_products_categories_and_sum_per_category(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> list[Enriched | Rejected]:
        cache = new_cache()
        try:
            await _write(cache, {"banana": BANANA, "milk": MILK})
            records = [
                _record("o1", [("banana", 2, 0.5), ("milk", 1, 1.25), ("banana", 1, 0.5)], 7),
                ConsumedRecord(b"o2", b"{not an order", "orders", 3, 8, 0),
                _record("o3", [("nobody", 1, 3.0)], 9),
            ]
            return await _enricher(cache).process(records)
        finally:
            await cache.close()

    first, bad, third = asyncio.run(run())
    assert isinstance(first, Enriched)
    assert isinstance(third, Enriched)
    assert isinstance(bad, Rejected)
    assert bad.code == "json.invalid"
    items = first.order.items
    assert [(i.category, i.category_status, i.category_score) for i in items] == [
        ("produce", "labelled", 0.97),
        ("dairy", "labelled", 0.88),
        ("produce", "labelled", 0.97),
    ]
    assert first.order.order_total == 2.75
    deltas = {d.key: (d.units, d.revenue) for d in first.deltas}
    assert deltas == {"produce|eu-north": (3, 1.5), "dairy|eu-north": (1, 1.25)}
    assert {(p.partition, p.offset) for d in first.deltas for p in d.parts} == {(3, 7)}
    # No coverage to ask: a product missing from the view is not labelled.
    (item,) = third.order.items
    assert (item.category, item.category_status, item.unknown_reason) == (
        "unknown",
        "unknown",
        "not_labelled",
    )
    assert third.unknown_items == 1


def test_a_batch_is_held_until_the_view_covers_the_labels_written_before_it(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> tuple[Enriched | Rejected, int]:
        cache = new_cache()
        try:
            coverage = Coverage(cache, behind=3, late={"banana": BANANA})
            enricher = _enricher(cache, coverage=coverage)
            (out,) = await enricher.process([_record("o1", [("banana", 1, 0.5)], 0)])
            return out, coverage.asked
        finally:
            await cache.close()

    out, asked = asyncio.run(run())
    assert asked == 4, "asked until covered"
    assert isinstance(out, Enriched)
    # The label the view applied while the batch was held is used, not "unknown".
    assert out.order.items[0].category_status == "labelled"
    assert out.unknown_items == 0


def test_a_product_the_caught_up_view_lacks_is_not_labelled(
    new_cache: Callable[..., LabelCache],
) -> None:
    async def run() -> Enriched | Rejected:
        cache = new_cache()
        try:
            enricher = _enricher(cache, coverage=Coverage(cache, behind=0, late={}))
            (out,) = await enricher.process([_record("o1", [("nobody", 1, 0.5)], 0)])
            return out
        finally:
            await cache.close()

    out = asyncio.run(run())
    assert isinstance(out, Enriched)
    assert out.order.items[0].unknown_reason == "not_labelled"


def test_an_outage_longer_than_the_hold_emits_unknown_cache_unavailable(
    down_url: str, new_cache: Callable[..., LabelCache]
) -> None:
    async def run() -> Enriched | Rejected:
        cache = new_cache(down_url)
        try:
            enricher = _enricher(cache, coverage=Coverage(cache, behind=0, late={}), hold_max_ms=0)
            (out,) = await enricher.process([_record("o1", [("banana", 1, 0.5)], 0)])
            return out
        finally:
            await cache.close()

    out = asyncio.run(run())
    assert isinstance(out, Enriched)
    (item,) = out.order.items
    assert (item.category, item.unknown_reason) == ("unknown", "cache_unavailable")
    assert out.deltas[0].key == "unknown|eu-north"


def test_a_product_whose_category_a_reviewer_gave_is_corrected(
    new_cache: Callable[..., LabelCache],
) -> None:
    fixed = ProductState("produce", 1.0, "v1", 3, corrected_by="rev-1")

    async def run() -> list[Enriched | Rejected]:
        cache = new_cache()
        try:
            await _write(cache, {"banana": BANANA, "plantain": fixed})
            records = [_record("o1", [("banana", 1, 0.5), ("plantain", 2, 1.0)], 7)]
            return await _enricher(cache).process(records)
        finally:
            await cache.close()

    (out,) = asyncio.run(run())
    assert isinstance(out, Enriched)
    assert [(i.category, i.category_status, i.unknown_reason) for i in out.order.items] == [
        ("produce", "labelled", None),
        ("produce", "corrected", None),
    ]
    assert codec.decode_enriched_order(out.value).items[1].category_status == "corrected"
