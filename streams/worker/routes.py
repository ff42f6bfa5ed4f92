"""Where each result of a batch goes.

A labelled listing goes to product-labels, to the review topics when flagged,
with its search descriptor to product-embeddings and, when it is new to the
integrity index, to listing-fingerprints; an enriched order to orders-enriched,
and a batch of them its sales deltas to the window table's input; a rejection to
its dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
            if review is not None and res.review:
                out.append(delivery.record(review, res.key, res.value))
            if listing_review is not None and res.listing_review:
                out.append(delivery.record(listing_review, res.key, res.value))
            if embeddings is not None and res.embedding:
                out.append(delivery.record(embeddings, res.key, res.embedding))
            if fingerprints is not None and res.integrity_record is not None:
                out.append(delivery.record(fingerprints, *res.integrity_record))
        return out

    return sends


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
