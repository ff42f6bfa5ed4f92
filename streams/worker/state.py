"""What the product view in Redis holds for one product: :class:`ProductState`.

Written only by the view builder (:mod:`streams.worker.views`), from the
product's latest record on the compacted ``product-labels`` topic, and read by
order enrichment (:mod:`streams.worker.enrich`) and recommendations (a product's
category for the popularity top-up). A label a reviewer gave (a ``product-labels``
record with ``corrected_by``, :mod:`streams.worker.corrections`) keeps its reviewer
here, so that enrichment calls it ``corrected``. Read by vitrine alone, so it is
MessagePack rather than JSON: about 70 bytes a product instead of about 190.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas.records import ProductLabelled

__all__ = [
    "ProductState",
    "decode_product_state",
    "encode_product_state",
    "product_state_of_record",
]


class ProductState(msgspec.Struct, frozen=True, array_like=True):
    """A product's category as its latest label gave it.

    Fields are added at the end with a default, so that states written before
    still decode (they are arrays).
    """

    category: str
    #: The category's score (calibrated probability mass of the category).
    score: float
    model_version: str
    #: When the label was made (the label record's ``labelled_at``), epoch ms.
    labelled_at_ms: int
    #: The reviewer whose correction gave the category; None: the model's.
    corrected_by: str | None = None

    @classmethod
    def of(cls, label: ProductLabelled) -> ProductState:
        """The state a ``product-labels`` record gives its product."""
        return cls(
            category=label.category,
            score=round(label.category_score, 6),
            model_version=label.model_version,
            labelled_at_ms=int(label.labelled_at.timestamp() * 1000),
            corrected_by=label.corrected_by,
        )


class _LabelFacts(msgspec.Struct, frozen=True):
    """The fields of a product-labels value the product view keeps (the rest is skipped)."""

    product_id: str
    category: str
    category_score: float
    model_version: str
    labelled_at: datetime
    corrected_by: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProductState)
_label_decoder = msgspec.json.Decoder(_LabelFacts)


def product_state_of_record(value: bytes) -> tuple[str, ProductState] | None:
    """(product_id, state) of a product-labels value; None when it is not one.

    Decodes only the fields the view keeps: about twice as fast as the whole
    contract, which matters when a view of millions of products is rebuilt.
    """
    try:
        facts = _label_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    state = ProductState(
        category=facts.category,
        score=round(facts.category_score, 6),
        model_version=facts.model_version,
        labelled_at_ms=int(facts.labelled_at.timestamp() * 1000),
        corrected_by=facts.corrected_by,
    )
    return facts.product_id, state


def encode_product_state(state: ProductState) -> bytes:
    """The Redis value of ``state``."""
    return _encoder.encode(state)


def decode_product_state(raw: bytes) -> ProductState | None:
    """A Redis value back as a state; None when it is not one (a stray or older value)."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
