"""Where each result of a batch goes.

A labelled listing goes to product-labels, to the review topics when flagged
(with the listing's topic, partition and offset in ``source``, so that a review
tool can fetch its photo), with its search descriptor to product-embeddings and,
when it is new to the integrity index, to listing-fingerprints; an enriched
order to orders-enriched, and a batch of them its sales deltas to the window
table's input; a rejection to its dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from schemas import codec
from schemas.records import ListingSource
from streams.worker.consumed import Rejected
from streams.worker.delivery import Delivery, Send
from streams.worker.enrich import Enriched
from streams.worker.labelling import Labelled
from streams.worker.windows import encode_delta, merge_deltas

__all__ = ["Route", "route", "sales_deltas"]

#: One result of a batch -> the sends that deliver it.
Route = Callable[[Labelled | Enriched | Rejected], list[Send]]


def route(
    delivery: Delivery,
    ok: str,
    dlq: str,
    review: str | None = None,
    listing_review: str | None = None,
    embeddings: str | None = None,
    fingerprints: str | None = None,
) -> Route:
    """A result to its record topic ``ok`` (and the optional ones), a rejection to ``dlq``."""

    def sends(res: Labelled | Enriched | Rejected) -> list[Send]:
        if isinstance(res, Rejected):
            return [delivery.dead_letter(dlq, res)]
        out = [delivery.record(ok, res.key, res.value)]
        if isinstance(res, Labelled):
            flagged = [
                topic
                for topic, on in ((review, res.review), (listing_review, res.listing_review))
                if topic is not None and on
            ]
            if flagged:
                value = _review_value(res)
                out.extend(delivery.record(topic, res.key, value) for topic in flagged)
            if embeddings is not None and res.embedding:
                out.append(delivery.record(embeddings, res.key, res.embedding))
            if fingerprints is not None and res.integrity_record is not None:
                out.append(delivery.record(fingerprints, *res.integrity_record))
        return out

    return sends


def _review_value(res: Labelled) -> bytes:
    """The labelled record with the listing's place on Kafka, for the review topics."""
    if res.output is None:
        return res.value
    rec = res.record
    source = ListingSource(topic=rec.topic, partition=rec.partition, offset=rec.offset)
    return codec.encode(msgspec.structs.replace(res.output, source=source))


def sales_deltas(
    delivery: Delivery, topic: str, window_s: int
) -> Callable[[Sequence[Enriched | Rejected]], list[Send]]:
    """An order batch's sales, merged per ``category|region`` and window, to ``topic``."""

    def sends(results: Sequence[Enriched | Rejected]) -> list[Send]:
        merged = merge_deltas(
            (d for res in results if isinstance(res, Enriched) for d in res.deltas), window_s
        )
        return [delivery.record(topic, d.key.encode(), encode_delta(d)) for d in merged]

    return sends
