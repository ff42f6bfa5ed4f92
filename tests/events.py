"""Builders of valid events, as (key, value) pairs, for the integration and reliability tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from inference.samples import SAMPLES_DIR
from schemas import codec
from streams.tools.events import make_listing, make_order, sample_photos

__all__ = ["SAMPLES_DIR", "file_uri", "listing", "order", "photo_bytes"]


def photo_bytes() -> list[tuple[str, bytes]]:
    """(class name, JPEG bytes) of every shipped sample photo."""
    return [(name, path.read_bytes()) for path, name in sample_photos()]


def listing(
    product_id: str,
    image: bytes | None = None,
    *,
    uri: str | None = None,
    event_id: str | None = None,
    seller_id: str | None = None,
) -> tuple[bytes, bytes]:
    """(key, value) of a ProductImageEvent with an inline image or a URI."""
    ev = make_listing(product_id, image=image, uri=uri, event_id=event_id, seller_id=seller_id)
    return product_id.encode(), codec.encode(ev)


def order(
    order_id: str,
    items: list[tuple[str, int, float]],
    *,
    region: str = "eu-north",
    created_at: datetime | None = None,
    event_id: str | None = None,
) -> tuple[bytes, bytes]:
    """(key, value) of an OrderEvent; items are (product_id, quantity, unit_price)."""
    ev = make_order(order_id, items, region=region, created_at=created_at, event_id=event_id)
    return order_id.encode(), codec.encode(ev)


def file_uri(path: Path) -> str:
    """``file://`` URI of a local path."""
    return path.resolve().as_uri()
