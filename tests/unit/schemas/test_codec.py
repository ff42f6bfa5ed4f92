"""Decoding, encoding and validation of the event records."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from schemas import (
    SCHEMA_VERSION,
    CategorySales,
    EnrichedOrder,
    OrderEvent,
    OrderItem,
    ProductImageEvent,
    ProductLabelled,
    SchemaError,
    decode,
    decode_category_sales,
    decode_enriched_order,
    decode_inline_image,
    decode_order,
    decode_product_image,
    decode_product_labelled,
    encode,
)
from tests.unit.schemas.support import EXAMPLES_DIR, example_type, load_example

NOW = datetime(2026, 11, 24, 6, 4, tzinfo=UTC)


def _raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode("utf-8")


def _order(**changes: Any) -> dict[str, Any]:
    document = load_example("OrderEvent.v1.json")
    document.update(changes)
    return document


def _image(**changes: Any) -> dict[str, Any]:
    document = load_example("ProductImageEvent.v1.json")
    document.update(changes)
    return {k: v for k, v in document.items() if v is not ...}


def test_order_round_trip() -> None:
    order = OrderEvent(
        schema_version=1,
        event_id="e-1",
        occurred_at=NOW,
        order_id="o-1",
        customer_id=None,
        region="eu-north",
        currency="SEK",
        created_at=NOW - timedelta(seconds=2),
        items=(OrderItem(product_id="p-1", quantity=3, unit_price=0.1),),
    )
    assert decode_order(encode(order)) == order


@pytest.mark.parametrize(
    ("name", "decoder"),
    [
        ("ProductImageEvent.v1.json", decode_product_image),
        ("ProductImageEvent-uri.v1.json", decode_product_image),
        ("ProductLabelled.v1.json", decode_product_labelled),
        ("OrderEvent.v1.json", decode_order),
        ("EnrichedOrder.v1.json", decode_enriched_order),
        ("CategorySales.v1.json", decode_category_sales),
    ],
)
def test_examples_round_trip_through_encode(name: str, decoder: Any) -> None:
    record = decoder(_raw(load_example(name)))
    again = decoder(encode(record))
    assert again == record
    assert encode(again) == encode(record)


def test_encode_writes_utc_as_z_and_keeps_nulls() -> None:
    order = decode_order(_raw(_order(customer_id=None)))
    written = json.loads(encode(order))
    assert written["created_at"] == "2026-11-24T09:15:00Z"
    assert written["customer_id"] is None
    assert written["items"][0] == {"product_id": "sku-100234", "quantity": 2, "unit_price": 3.49}


def test_generic_decode_matches_typed_decoders() -> None:
    raw = _raw(load_example("CategorySales.v1.json"))
    assert decode(raw, CategorySales) == decode_category_sales(raw)
    raw = _raw(load_example("EnrichedOrder.v1.json"))
    assert decode(raw, EnrichedOrder) == decode_enriched_order(raw)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = _raw(_order())
    assert decode_order(bytearray(raw)) == decode_order(memoryview(raw)) == decode_order(raw)


def test_unknown_fields_are_ignored_at_every_level() -> None:
    document = _order(loyalty_tier="gold", channel={"web": True})
    document["items"][0]["gift_wrap"] = True
    order = decode_order(_raw(document))
    assert order == decode_order(_raw(_order()))


def test_offsets_are_kept_as_instants() -> None:
    order = decode_order(_raw(_order(created_at="2026-11-24T10:15:00+01:00")))
    assert order.created_at == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    assert order.created_at.utcoffset() == timezone(timedelta(hours=1)).utcoffset(None)


def test_optional_fields_default_to_none() -> None:
    document = _image(title=..., seller_id=..., content_type=..., attributes=...)
    event = decode_product_image(_raw(document))
    assert (event.title, event.seller_id, event.content_type, event.attributes) == (
        None,
        None,
        None,
        None,
    )


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``document`` with the field at ``a.b[0].c`` set (``...`` deletes)."""
    document = copy.deepcopy(document)
    parts = path.replace("[", ".").replace("]", "").split(".")
    target: Any = document
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is ...:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return document


# (example, field path, bad value, the path the error must name)
VIOLATIONS = [
    ("OrderEvent.v1.json", "schema_version", 0, "$.schema_version"),
    ("OrderEvent.v1.json", "schema_version", "1", "$.schema_version"),
    ("OrderEvent.v1.json", "schema_version", True, "$.schema_version"),
    ("OrderEvent.v1.json", "event_id", "", "$.event_id"),
    ("OrderEvent.v1.json", "event_id", "x" * 129, "$.event_id"),
    ("OrderEvent.v1.json", "event_id", ..., "$.event_id"),
    ("OrderEvent.v1.json", "occurred_at", "2026-11-24", "$.occurred_at"),
    ("OrderEvent.v1.json", "occurred_at", "2026-11-24T09:15:02", "$.occurred_at"),
    ("OrderEvent.v1.json", "order_id", "", "$.order_id"),
    ("OrderEvent.v1.json", "order_id", None, "$.order_id"),
    ("OrderEvent.v1.json", "customer_id", "", "$.customer_id"),
    ("OrderEvent.v1.json", "region", "", "$.region"),
    ("OrderEvent.v1.json", "region", "eu|north", "$.region"),
    ("OrderEvent.v1.json", "region", "r" * 65, "$.region"),
    ("OrderEvent.v1.json", "currency", "EURO", "$.currency"),
    ("OrderEvent.v1.json", "currency", "eur", "$.currency"),
    ("OrderEvent.v1.json", "created_at", 1764000000, "$.created_at"),
    ("OrderEvent.v1.json", "items", [], "$.items"),
    ("OrderEvent.v1.json", "items", None, "$.items"),
    ("OrderEvent.v1.json", "items[0].product_id", "", "$.items[0].product_id"),
    ("OrderEvent.v1.json", "items[0].product_id", ..., "$.items[0].product_id"),
    ("OrderEvent.v1.json", "items[1].quantity", 0, "$.items[1].quantity"),
    ("OrderEvent.v1.json", "items[1].quantity", -3, "$.items[1].quantity"),
    ("OrderEvent.v1.json", "items[1].quantity", 1.5, "$.items[1].quantity"),
    ("OrderEvent.v1.json", "items[1].quantity", 1_000_001, "$.items[1].quantity"),
    ("OrderEvent.v1.json", "items[2].unit_price", -0.01, "$.items[2].unit_price"),
    ("OrderEvent.v1.json", "items[2].unit_price", "1.25", "$.items[2].unit_price"),
    ("OrderEvent.v1.json", "items[2].unit_price", 1e10, "$.items[2].unit_price"),
    ("ProductImageEvent.v1.json", "product_id", "", "$.product_id"),
    ("ProductImageEvent.v1.json", "product_id", 7, "$.product_id"),
    ("ProductImageEvent.v1.json", "title", "t" * 513, "$.title"),
    ("ProductImageEvent.v1.json", "image_b64", "", "$.image_b64"),
    ("ProductImageEvent.v1.json", "image_b64", 12, "$.image_b64"),
    ("ProductImageEvent.v1.json", "attributes", {"a": 1}, "$.attributes[...]"),
    ("ProductImageEvent.v1.json", "attributes", ["a"], "$.attributes"),
    ("ProductImageEvent.v1.json", "image_b64", None, "$"),
    ("ProductImageEvent-uri.v1.json", "image_uri", "", "$.image_uri"),
    ("ProductImageEvent-uri.v1.json", "image_uri", "h" * 2049, "$.image_uri"),
    ("ProductImageEvent-uri.v1.json", "image_b64", "iVBORw0KGgo=", "$"),
    ("ProductLabelled.v1.json", "labels[0].score", 1.01, "$.labels[0].score"),
    ("ProductLabelled.v1.json", "labels[0].label", "", "$.labels[0].label"),
    ("ProductLabelled.v1.json", "image_sha256", "ABC", "$.image_sha256"),
    ("ProductLabelled.v1.json", "image_sha256", "g" * 64, "$.image_sha256"),
    ("ProductLabelled.v1.json", "timings.decode_ms", -1, "$.timings.decode_ms"),
    ("ProductLabelled.v1.json", "timings", ..., "$.timings"),
    ("ProductLabelled.v1.json", "cached", "no", "$.cached"),
    ("EnrichedOrder.v1.json", "items[2].category_status", "maybe", "$.items[2].category_status"),
    ("EnrichedOrder.v1.json", "items[2].unknown_reason", "gone", "$.items[2].unknown_reason"),
    ("EnrichedOrder.v1.json", "items[0].line_total", -1, "$.items[0].line_total"),
    ("EnrichedOrder.v1.json", "order_total", ..., "$.order_total"),
    ("CategorySales.v1.json", "season", "monsoon", "$.season"),
    ("CategorySales.v1.json", "orders", -1, "$.orders"),
    ("CategorySales.v1.json", "revenue", -0.5, "$.revenue"),
    ("CategorySales.v1.json", "window_end", "soon", "$.window_end"),
    ("CategorySales.v1.json", "category", "a|b", "$.category"),
]


@pytest.mark.parametrize(
    ("example", "field", "value", "path"),
    VIOLATIONS,
    ids=[f"{e.split('.')[0]}:{f}={v!r:.20}" for e, f, v, _ in VIOLATIONS],
)
def test_each_violated_constraint_is_schema_invalid_naming_the_field(
    example: str, field: str, value: Any, path: str
) -> None:
    record_type = example_type(EXAMPLES_DIR / example)
    raw = _raw(_set(load_example(example), field, value))
    with pytest.raises(SchemaError) as caught:
        decode(raw, record_type)  # type: ignore[type-var]
    error = caught.value
    assert error.code == "schema.invalid"
    assert error.path == path
    assert record_type.__name__ in error.message
    field_name = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if field_name != "$":
        assert field_name in error.message
    assert not error.retriable


def test_error_message_quotes_msgspec_path() -> None:
    document = load_example("OrderEvent.v1.json")
    document["items"][0]["quantity"] = 0
    with pytest.raises(SchemaError) as caught:
        decode_order(_raw(document))
    assert caught.value.message == (
        "invalid OrderEvent: Expected `int` >= 1 - at `$.items[0].quantity`"
    )
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{", b"{'a': 1}", b"\xff\xfe{}", b'{"event_id": "\xc3"}', b"NaN", b"[1,]"],
)
def test_not_json_is_json_invalid(raw: bytes) -> None:
    for decoder in (decode_order, decode_product_image):
        with pytest.raises(SchemaError) as caught:
            decoder(raw)
        assert caught.value.code == "json.invalid"


@pytest.mark.parametrize("raw", [b"[]", b"null", b"1", b'"order"', b"true", b"{}"])
def test_json_that_is_not_an_event_object_is_schema_invalid(raw: bytes) -> None:
    with pytest.raises(SchemaError) as caught:
        decode_order(raw)
    assert caught.value.code == "schema.invalid"


def test_newer_schema_version_is_unsupported_even_when_the_shape_changed() -> None:
    with pytest.raises(SchemaError) as caught:
        decode_order(_raw(_order(schema_version=SCHEMA_VERSION + 1)))
    assert caught.value.code == "schema.version_unsupported"
    assert caught.value.path == "$.schema_version"
    v2 = {"schema_version": 2, "event_id": "e", "lines": [{"sku": "x"}]}
    with pytest.raises(SchemaError) as caught:
        decode_order(_raw(v2))
    assert caught.value.code == "schema.version_unsupported"
    assert "2" in caught.value.message


def test_product_image_needs_exactly_one_image_field() -> None:
    assert decode_product_image(_raw(_image())).image_b64 is not None
    uri_only = _image(image_b64=..., image_uri="https://images.example.com/a.jpg")
    assert decode_product_image(_raw(uri_only)).image_uri == "https://images.example.com/a.jpg"
    for document in (
        _image(image_uri="https://images.example.com/a.jpg"),
        _image(image_b64=...),
        _image(image_b64=None, image_uri=None),
    ):
        with pytest.raises(SchemaError, match="exactly one of `image_b64` and `image_uri`"):
            decode_product_image(_raw(document))
    # Null counts as absent, as many producers write unset optionals as null.
    null_other = _image(image_uri=None)
    assert decode_product_image(_raw(null_other)).image_uri is None


def test_constructing_a_record_checks_the_image_rule_too() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ProductImageEvent(schema_version=1, event_id="e", occurred_at=NOW, product_id="p")


def _inline(text: str) -> ProductImageEvent:
    return ProductImageEvent(
        schema_version=1, event_id="e", occurred_at=NOW, product_id="p", image_b64=text
    )


def test_inline_image_decodes_strict_base64() -> None:
    payload = bytes(range(256)) * 3
    assert decode_inline_image(_inline(base64.b64encode(payload).decode())) == payload
    event = decode_product_image(_raw(load_example("ProductImageEvent.v1.json")))
    assert decode_inline_image(event).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "iVBORw0KGgo",  # padding missing
        "YQ=",
        "YQ===",
        "YR==",  # non-zero trailing bits
        "YQ==YQ==",
        "====",
        "aGVs\nbG8=",
        " aGVsbG8=",
        "aGVsbG8_",  # URL-safe alphabet
        "data:image/png;base64,aGVsbG8=",
        "aGVsbG8=é",
    ],
)
def test_inline_image_rejects_loose_base64(text: str) -> None:
    with pytest.raises(SchemaError) as caught:
        decode_inline_image(_inline(text))
    assert caught.value.code == "image.base64_invalid"
    assert caught.value.path == "$.image_b64"


def test_inline_image_caps_size_before_and_after_decoding() -> None:
    text = base64.b64encode(b"x" * 1000).decode()
    assert len(decode_inline_image(_inline(text), max_bytes=1000)) == 1000
    with pytest.raises(SchemaError) as caught:
        decode_inline_image(_inline(text), max_bytes=999)
    assert caught.value.code == "image.too_large"
    assert "max_image_bytes=999" in caught.value.message
    # Too long to be under the cap: refused without decoding, even if not base64.
    with pytest.raises(SchemaError) as caught:
        decode_inline_image(_inline("!" * 2000), max_bytes=1000)
    assert caught.value.code == "image.too_large"


def test_inline_image_empty_and_uri_events() -> None:
    with pytest.raises(SchemaError) as caught:
        decode_inline_image(_inline(""))
    assert caught.value.code == "image.empty"
    by_uri = decode_product_image(_raw(load_example("ProductImageEvent-uri.v1.json")))
    with pytest.raises(ValueError, match="image_uri"):
        decode_inline_image(by_uri)


def test_records_are_frozen() -> None:
    labelled = decode_product_labelled(_raw(load_example("ProductLabelled.v1.json")))
    assert isinstance(labelled, ProductLabelled)
    with pytest.raises(AttributeError):
        labelled.category = "toys"  # type: ignore[misc]
    assert isinstance(labelled.labels, tuple)
