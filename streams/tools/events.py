"""Builders of valid events from the shipped sample photos.

Shared by ``vitrine demo``, ``vitrine simulate``, the benchmarks and the tests,
so that what they publish is what a catalogue or order service would.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from inference.samples import samples
from schemas.records import SCHEMA_VERSION, OrderEvent, OrderItem, ProductImageEvent

__all__ = ["make_listing", "make_order", "sample_photos"]


def sample_photos() -> list[tuple[Path, str]]:
    """The shipped photos and their class names (Grocery Store data set, MIT)."""
    return [(sample.path, sample.class_name) for sample in samples()]


def make_listing(
    product_id: str,
    *,
    image: bytes | None = None,
    uri: str | None = None,
    event_id: str | None = None,
    title: str | None = None,
    seller_id: str | None = None,
) -> ProductImageEvent:
    """A ProductImageEvent carrying ``image`` inline (base64) or pointing at ``uri``."""
    return ProductImageEvent(
        schema_version=SCHEMA_VERSION,
        event_id=event_id or f"ev-{uuid.uuid4().hex}",
        occurred_at=datetime.now(UTC),
        product_id=product_id,
        title=title,
        seller_id=seller_id,
        image_b64=base64.b64encode(image).decode() if image is not None else None,
        image_uri=uri,
    )


def make_order(
    order_id: str,
    items: Sequence[tuple[str, int, float]],
    *,
    region: str = "eu-north",
    currency: str = "EUR",
    created_at: datetime | None = None,
    event_id: str | None = None,
    customer_id: str | None = None,
) -> OrderEvent:
    """An OrderEvent; ``items`` are (product_id, quantity, unit_price)."""
    now = datetime.now(UTC)
    return OrderEvent(
        schema_version=SCHEMA_VERSION,
        event_id=event_id or f"ev-{uuid.uuid4().hex}",
        occurred_at=now,
        order_id=order_id,
        customer_id=customer_id,
        region=region,
        currency=currency,
        created_at=created_at or now,
        items=tuple(OrderItem(product_id=p, quantity=q, unit_price=u) for p, q, u in items),
    )
