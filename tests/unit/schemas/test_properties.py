"""Property tests: decoders fail only with SchemaError, and valid records round-trip."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import (
    OrderEvent,
    OrderItem,
    ProductImageEvent,
    SchemaError,
    decode_inline_image,
    decode_order,
    decode_product_image,
    encode,
)
from tests.unit.schemas.support import load_example

DECODERS = (decode_order, decode_product_image)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _decodes_or_schema_error(raw: bytes) -> None:
    codes = []
    for decoder in DECODERS:
        try:
            decoder(raw)
        except SchemaError as exc:
            codes.append(exc.code)
            assert exc.message  # noqa: PT017 -- only SchemaError may escape, so no raises()
    assert set(codes) <= {"json.invalid", "schema.invalid", "schema.version_unsupported"}


@given(st.binary(max_size=512))
@example(b"[" * 5000)
@example(b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}")
@example(b'{"schema_version": 2, "event_id": "\xff"}')
def test_random_bytes_only_raise_schema_error(raw: bytes) -> None:
    _decodes_or_schema_error(raw)


@given(json_values)
def test_random_json_only_raises_schema_error(value: Any) -> None:
    _decodes_or_schema_error(json.dumps(value).encode())


@given(
    st.sampled_from(["OrderEvent.v1.json", "ProductImageEvent.v1.json"]),
    st.data(),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_valid_examples_with_one_random_field_only_raise_schema_error(
    name: str, data: st.DataObject
) -> None:
    document = load_example(name)
    if name == "OrderEvent.v1.json" and data.draw(st.booleans()):
        target = document["items"][data.draw(st.integers(0, len(document["items"]) - 1))]
    else:
        target = document
    key = data.draw(st.sampled_from([*target, "new_field"]))
    target[key] = data.draw(json_values)
    _decodes_or_schema_error(json.dumps(document).encode())


ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=128)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
orders = st.builds(
    OrderEvent,
    schema_version=st.just(1),
    event_id=ids,
    occurred_at=aware,
    order_id=ids,
    customer_id=st.none() | ids,
    region=st.text(st.characters(codec="utf-8", exclude_characters="|"), min_size=1, max_size=64),
    currency=st.from_regex(r"\A[A-Z]{3}\Z"),
    created_at=aware,
    items=st.lists(
        st.builds(
            OrderItem,
            product_id=ids,
            quantity=st.integers(1, 1_000_000),
            unit_price=st.floats(0, 1e9),
        ),
        min_size=1,
        max_size=5,
    ).map(tuple),
)


@given(orders)
def test_valid_orders_round_trip(order: OrderEvent) -> None:
    assert decode_order(encode(order)) == order


@given(st.binary(max_size=300))
def test_inline_images_round_trip(payload: bytes) -> None:
    event = ProductImageEvent(
        schema_version=1,
        event_id="e",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        product_id="p",
        image_b64=base64.b64encode(payload).decode(),
    )
    if payload:
        assert decode_inline_image(event) == payload


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_- \n",
        min_size=1,
        max_size=40,
    )
)
def test_accepted_base64_is_canonical(text: str) -> None:
    event = ProductImageEvent(
        schema_version=1,
        event_id="e",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        product_id="p",
        image_b64=text,
    )
    try:
        payload = decode_inline_image(event)
    except SchemaError as exc:
        code = exc.code
    else:
        code = "ok"
        assert base64.b64encode(payload).decode() == text
    assert code in {"ok", "image.base64_invalid", "image.empty"}
