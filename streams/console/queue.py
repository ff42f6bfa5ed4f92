"""The pending review queue and its offset bookkeeping, with no Kafka in it.

An item is one product awaiting a decision: its latest flagged record (newest
wins per product_id), and the review records that carry it (a listing both
low in confidence and copied is on both review topics). Per partition the queue
knows the offsets still pending; the commit point is the lowest of them, or
the end of what was read when none is pending, so a restart reads every
undecided item again and nothing decided. Counts per flag, category and seller
are kept as items come and go, so a page never counts the whole queue.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from schemas.records import ProductLabelled

__all__ = ["DecisionRate", "Filters", "Item", "Page", "Ref", "ReviewQueue"]

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Ref:
    """Where one review record is: topic, partition, offset."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TopicPartition:
        """Its topic and partition."""
        return (self.topic, self.partition)


@dataclass(slots=True)
class Item:
    """A product awaiting a decision: its latest flagged record and the records carrying it."""

    record: ProductLabelled
    refs: list[Ref] = field(default_factory=list)

    @property
    def product_id(self) -> str:
        """The listing's product id (the queue's key)."""
        return self.record.product_id

    @property
    def seller(self) -> str:
        """Its seller, or ``-`` when the listing names none."""
        return self.record.seller_id or "-"


@dataclass(frozen=True, slots=True)
class Filters:
    """What a page shows: items with this flag, category and seller (None: any)."""

    flag: str | None = None
    category: str | None = None
    seller: str | None = None

    def match(self, item: Item) -> bool:
        """Whether ``item`` passes every filter set."""
        rec = item.record
        return (
            (self.flag is None or self.flag in rec.flags)
            and (self.category is None or self.category == rec.category)
            and (self.seller is None or self.seller == item.seller)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the filtered queue."""

    items: list[Item]
    #: Items that pass the filters, on every page.
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        """How many pages the filtered queue has (at least 1)."""
        return max(1, -(-self.total // self.size))


class ReviewQueue:
    """Pending items by product id, in arrival order, with their offsets and counts."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: dict[str, Item] = {}
        # Per partition: pending offsets in the order read (so, increasing; the
        # first key is the lowest) and the next offset to read.
        self._pending: dict[TopicPartition, dict[int, None]] = {}
        self._read_to: dict[TopicPartition, int] = {}
        self._decided: set[tuple[str, str]] = set()
        self.flags: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()
        self.sellers: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    @property
    def full(self) -> bool:
        """The queue holds ``max_items``: read no more until some are decided."""
        return len(self._items) >= self.max_items

    def get(self, product_id: str) -> Item | None:
        """The pending item of ``product_id``, if any."""
        return self._items.get(product_id)

    def is_decided(self, product_id: str, image_sha256: str) -> bool:
        """A reviewer already decided about this product's photo."""
        return (product_id, image_sha256) in self._decided

    def skip(self, ref: Ref) -> None:
        """A record read and not queued (undecodable): the commit point may pass it."""
        self._advance(ref)

    def add(self, record: ProductLabelled, ref: Ref) -> bool:
        """Queue a flagged record read at ``ref``; False when it needs no decision."""
        if not self._advance(ref):
            return False  # read again (a seek back): already counted
        if self.is_decided(record.product_id, record.image_sha256):
            return False
        old = self._items.get(record.product_id)
        if old is not None:
            if old.record.event_id == record.event_id:  # the same listing on the other topic
                old.refs.append(ref)
                self._pending[ref.tp][ref.offset] = None
                return True
            if old.record.labelled_at > record.labelled_at:
                return False  # an older listing of the product: the newer one stands
            self._drop(old)
        item = Item(record, [ref])
        self._items[record.product_id] = item
        self._pending[ref.tp][ref.offset] = None
        self._count(item, 1)
        return True

    def mark_decided(self, product_id: str, image_sha256: str) -> Item | None:
        """A decision about this photo is on Kafka: drop its item; return it."""
        self._decided.add((product_id, image_sha256))
        item = self._items.get(product_id)
        if item is None or item.record.image_sha256 != image_sha256:
            return None
        self._drop(item)
        return item

    def commit_points(self) -> dict[TopicPartition, int]:
        """Per partition read: the offset up to which every record is decided or skipped."""
        out = {}
        for tp, end in self._read_to.items():
            pending = self._pending.get(tp)
            out[tp] = next(iter(pending)) if pending else end
        return out

    def drop_partitions(self, tps: set[TopicPartition]) -> None:
        """Forget partitions this console no longer reads (a rebalance gave them away)."""
        for item in list(self._items.values()):
            if any(ref.tp in tps for ref in item.refs):
                self._drop(item)
        for tp in tps:
            self._pending.pop(tp, None)
            self._read_to.pop(tp, None)

    def page(self, filters: Filters, number: int, size: int) -> Page:
        """Page ``number`` (from 1) of the items passing ``filters``, oldest first."""
        number = max(1, number)
        start = (number - 1) * size
        items: list[Item] = []
        total = 0
        for item in self._items.values():
            if not filters.match(item):
                continue
            if start <= total < start + size:
                items.append(item)
            total += 1
        return Page(items, total, number, size)

    def _advance(self, ref: Ref) -> bool:
        end = self._read_to.get(ref.tp)
        if end is not None and ref.offset < end:
            return False
        self._read_to[ref.tp] = ref.offset + 1
        self._pending.setdefault(ref.tp, {})
        return True

    def _drop(self, item: Item) -> None:
        del self._items[item.product_id]
        for ref in item.refs:
            self._pending.get(ref.tp, {}).pop(ref.offset, None)
        self._count(item, -1)

    def _count(self, item: Item, step: int) -> None:
        rec = item.record
        for counter, keys in (
            (self.flags, rec.flags),
            (self.categories, (rec.category,)),
            (self.sellers, (item.seller,)),
        ):
            for key in keys:
                counter[key] += step
                if counter[key] <= 0:
                    del counter[key]


class DecisionRate:
    """Decisions in the last hour, for the page's header."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def add(self, now_s: float) -> None:
        """One decision at ``now_s`` (monotonic seconds)."""
        self._times.append(now_s)

    def per_hour(self, now_s: float) -> int:
        """Decisions in the hour up to ``now_s``."""
        while self._times and self._times[0] <= now_s - 3600:
            self._times.popleft()
        return len(self._times)
