"""A flagged ProductLabelled for the console's and the routes' unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.records import SCHEMA_VERSION, DuplicateOf, Label, ProductLabelled, Timings

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def rec(
    product_id: str,
    *,
    sha: str = "a",
    event_id: str | None = None,
    at_s: int = 0,
    flags: tuple[str, ...] = ("low_confidence",),
    category: str = "produce",
    seller: str | None = "s1",
) -> ProductLabelled:
    return ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=event_id or f"{product_id}-{at_s}",
        occurred_at=T0,
        product_id=product_id,
        labels=(Label(label="Banana", score=0.4),),
        category=category,
        category_score=0.4,
        model_name="m",
        model_version="1",
        image_sha256=sha * 64,
        flags=flags,
        timings=Timings(decode_ms=0, inference_ms=0, end_to_end_ms=0),
        labelled_at=T0 + timedelta(seconds=at_s),
        seller_id=seller,
        duplicate_of=(
            DuplicateOf(
                product_id="o", seller_id="s0", image_sha256="a" * 64, match="exact", hamming=0
            )
            if "duplicate_image" in flags
            else None
        ),
    )
