"""Dead-letter headers: written and read back, and documented in DEADLETTER.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas import deadletter
from schemas.deadletter import (
    ERROR_CODES,
    HEADER_ERROR_CODE,
    HEADER_ERROR_MESSAGE,
    HEADER_FAILED_AT,
    MAX_MESSAGE_BYTES,
    DeadLetter,
    decode_headers,
    encode_headers,
)
from schemas.errors import SchemaError
from tests.unit.schemas.support import ROOT

LETTER = DeadLetter(
    error_code="schema.invalid",
    error_message="invalid OrderEvent: Expected `int` >= 1 - at `$.items[0].quantity`",
    source_topic="orders",
    source_partition=3,
    source_offset=18342,
    failed_at=datetime(2026, 11, 24, 6, 4, 0, 123456, tzinfo=UTC),
    schema_version=1,
    worker="vitrine@host-a:4120",
    event_id="9f1c2b3a",
)
HEADER_NAMES = sorted(
    value
    for name, value in vars(deadletter).items()
    if name.startswith("HEADER_") and name != "HEADER_PREFIX"
)


def test_headers_are_written_as_documented() -> None:
    headers = dict(encode_headers(LETTER))
    assert headers == {
        "vitrine-error-code": b"schema.invalid",
        "vitrine-error-message": LETTER.error_message.encode(),
        "vitrine-source-topic": b"orders",
        "vitrine-source-partition": b"3",
        "vitrine-source-offset": b"18342",
        "vitrine-failed-at": b"2026-11-24T06:04:00.123Z",
        "vitrine-schema-version": b"1",
        "vitrine-worker": b"vitrine@host-a:4120",
        "vitrine-event-id": b"9f1c2b3a",
    }


def test_round_trip_and_optional_headers() -> None:
    letter = decode_headers(encode_headers(LETTER))
    assert letter == DeadLetter(
        **{
            **{f: getattr(LETTER, f) for f in LETTER.__struct_fields__},
            "failed_at": datetime(2026, 11, 24, 6, 4, 0, 123000, tzinfo=UTC),
        }
    )
    bare = DeadLetter(
        **{
            **{f: getattr(LETTER, f) for f in LETTER.__struct_fields__},
            "worker": None,
            "event_id": None,
        }
    )
    headers = encode_headers(bare)
    assert len(headers) == 7
    assert decode_headers(headers).worker is None


def test_failed_at_is_written_in_utc() -> None:
    local = LETTER.failed_at.astimezone(timezone(timedelta(hours=-5)))
    letter = DeadLetter(
        **{**{f: getattr(LETTER, f) for f in LETTER.__struct_fields__}, "failed_at": local}
    )
    assert dict(encode_headers(letter))[HEADER_FAILED_AT] == b"2026-11-24T06:04:00.123Z"
    naive = DeadLetter(
        **{
            **{f: getattr(LETTER, f) for f in LETTER.__struct_fields__},
            "failed_at": datetime(2026, 1, 1),
        }
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_headers(naive)


def test_original_headers_are_kept_and_old_vitrine_headers_replaced() -> None:
    original = [("traceparent", b"00-abc"), (HEADER_ERROR_CODE, b"json.invalid"), ("x", None)]
    headers = encode_headers(LETTER, original)
    assert headers[0] == ("traceparent", b"00-abc")
    assert [v for k, v in headers if k == HEADER_ERROR_CODE] == [b"schema.invalid"]
    assert all(v is not None for _, v in headers)


def test_long_messages_are_cut_on_a_character_boundary() -> None:
    letter = DeadLetter(
        **{**{f: getattr(LETTER, f) for f in LETTER.__struct_fields__}, "error_message": "é" * 2000}
    )
    value = dict(encode_headers(letter))[HEADER_ERROR_MESSAGE]
    assert len(value) <= MAX_MESSAGE_BYTES
    assert value.decode("utf-8").endswith("...")


def test_reading_accepts_mappings_str_values_and_last_repeat_wins() -> None:
    headers = dict(encode_headers(LETTER))
    as_text = {k: v.decode() for k, v in headers.items()}
    assert decode_headers(as_text).source_offset == 18342
    repeated = [*encode_headers(LETTER), (HEADER_ERROR_CODE, b"image.too_large"), ("other", b"")]
    assert decode_headers(repeated).error_code == "image.too_large"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("vitrine-source-offset", None),
        ("vitrine-source-offset", b"12a"),
        ("vitrine-source-partition", "٣".encode()),
        ("vitrine-failed-at", b"yesterday"),
        ("vitrine-failed-at", b"2026-11-24T06:04:00"),
        ("vitrine-error-code", b"\xff"),
        ("vitrine-error-code", None),
    ],
)
def test_missing_or_malformed_headers_name_the_header(name: str, value: bytes | None) -> None:
    headers = [(k, v) for k, v in encode_headers(LETTER) if k != name]
    if value is not None:
        headers.append((name, value))
    with pytest.raises(SchemaError) as caught:
        decode_headers(headers)
    assert caught.value.code == "deadletter.invalid"
    assert name in caught.value.message


def test_deadletter_md_documents_every_header_and_code() -> None:
    text = (ROOT / "DEADLETTER.md").read_text(encoding="utf-8")
    documented_headers = set(re.findall(r"^\| `(vitrine-[a-z-]+)` \|", text, re.MULTILINE))
    assert documented_headers == set(HEADER_NAMES)
    documented_codes = dict(
        re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_]+)` \| (.+) \|$", text, re.MULTILINE)
    )
    assert set(documented_codes) == set(ERROR_CODES)
    for code, meaning in ERROR_CODES.items():
        assert documented_codes[code].replace("`", "") == meaning
