"""Review copies of a labelled listing say where the listing is; the record does not."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import codec
from schemas.records import ListingSource
from streams.worker.consumed import ConsumedRecord
from streams.worker.delivery import Delivery
from streams.worker.labelling import Labelled
from streams.worker.routes import route
from tests.unit.streams.console.records import rec


def _sent(send: Any) -> tuple[str, bytes, bytes]:
    topic, key, value = send.args
    return topic, key, value


def test_review_copies_carry_the_listing_source() -> None:
    output = rec("p", flags=("low_confidence", "duplicate_image"))
    value = codec.encode(output)
    consumed = ConsumedRecord(b"p", b"{}", "product-images", 3, 1234, 0)
    labelled = Labelled(
        consumed, b"p", value, False, output.image_sha256, None, review=True, output=output
    )
    sends = route(Delivery(None), "labels", "dlq", "product-review", "listing-review")(labelled)
    got = {topic: codec.decode_product_labelled(v) for topic, _, v in map(_sent, sends)}
    assert set(got) == {"labels", "product-review", "listing-review"}
    assert got["labels"] == output, "the product's record is unchanged"
    source = ListingSource(topic="product-images", partition=3, offset=1234)
    for topic in ("product-review", "listing-review"):
        assert got[topic] == msgspec.structs.replace(output, source=source)
