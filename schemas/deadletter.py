"""Headers of dead-letter records, for the worker that writes them and anyone who reads them.

A dead-letter record keeps the failed record's key and value bytes unchanged; why it
failed travels in ``vitrine-*`` headers (see ``schemas/DEADLETTER.md``). Reading one::

    from schemas.deadletter import decode_headers
    letter = decode_headers(record.headers)   # aiokafka / kafka-python header pairs
    print(letter.error_code, letter.source_topic, letter.source_offset)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

import msgspec

from schemas.errors import DEADLETTER_INVALID, SchemaError

__all__ = [
    "ERROR_CODES",
    "HEADER_ERROR_CODE",
    "HEADER_ERROR_MESSAGE",
    "HEADER_EVENT_ID",
    "HEADER_FAILED_AT",
    "HEADER_PREFIX",
    "HEADER_SCHEMA_VERSION",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "HEADER_WORKER",
    "MAX_MESSAGE_BYTES",
    "DeadLetter",
    "decode_headers",
    "encode_headers",
]

HEADER_PREFIX: Final = "vitrine-"
HEADER_ERROR_CODE: Final = "vitrine-error-code"
HEADER_ERROR_MESSAGE: Final = "vitrine-error-message"
HEADER_SOURCE_TOPIC: Final = "vitrine-source-topic"
HEADER_SOURCE_PARTITION: Final = "vitrine-source-partition"
HEADER_SOURCE_OFFSET: Final = "vitrine-source-offset"
HEADER_FAILED_AT: Final = "vitrine-failed-at"
HEADER_SCHEMA_VERSION: Final = "vitrine-schema-version"
HEADER_WORKER: Final = "vitrine-worker"
HEADER_EVENT_ID: Final = "vitrine-event-id"

MAX_MESSAGE_BYTES: Final = 1024
"""``vitrine-error-message`` is cut to this many UTF-8 bytes (ending in "...")."""

ERROR_CODES: Final[Mapping[str, str]] = {
    "json.invalid": "The value is not UTF-8 JSON (or is empty).",
    "schema.invalid": "Valid JSON that breaks the topic's contract; the message names the field.",
    "schema.version_unsupported": "schema_version is newer than the worker reads.",
    "image.base64_invalid": "image_b64 is not strict, padded, standard base64.",
    "image.empty": "The image has zero bytes.",
    "image.too_large": "The image is over max_image_bytes or max_image_pixels.",
    "image.unsupported_format": "The image is not JPEG, PNG, WebP or BMP.",
    "image.truncated": "The image file ends before its pixel data does.",
    "image.decode_failed": "The image bytes could not be decoded (corrupt).",
    "image.uri_refused": "image_uri breaks the fetch policy (scheme, host, address, root).",
    "image.fetch_failed": "image_uri could not be fetched (network, HTTP status, missing file).",
    "order.invalid": "A valid order that cannot be enriched or aggregated.",
    "internal.error": "An unexpected error in the worker; a bug to report.",
}
"""Known codes and what they mean. The set is open: readers must accept unknown codes."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Why one record was dead-lettered, and where it came from."""

    error_code: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: datetime
    schema_version: int
    worker: str | None = None
    event_id: str | None = None


def _truncate(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    # Cut on a character boundary, leaving room for the marker.
    return raw[: limit - 3].decode("utf-8", errors="ignore").encode("utf-8") + b"..."


def _format_time(moment: datetime) -> bytes:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"failed_at must be timezone-aware, got {moment.isoformat()}")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").encode("ascii")


def encode_headers(
    letter: DeadLetter, original: Iterable[tuple[str, bytes | None]] = ()
) -> list[tuple[str, bytes]]:
    """Return the headers of the dead-letter record for ``letter``.

    ``original`` (the failed record's headers) are kept, except earlier ``vitrine-*``
    headers, which the new ones replace: a record that fails again after a replay
    carries only its latest failure.
    """
    headers = [
        (name, value)
        for name, value in original
        if not name.startswith(HEADER_PREFIX) and value is not None
    ]
    headers += [
        (HEADER_ERROR_CODE, letter.error_code.encode("utf-8")),
        (HEADER_ERROR_MESSAGE, _truncate(letter.error_message, MAX_MESSAGE_BYTES)),
        (HEADER_SOURCE_TOPIC, letter.source_topic.encode("utf-8")),
        (HEADER_SOURCE_PARTITION, str(letter.source_partition).encode("ascii")),
        (HEADER_SOURCE_OFFSET, str(letter.source_offset).encode("ascii")),
        (HEADER_FAILED_AT, _format_time(letter.failed_at)),
        (HEADER_SCHEMA_VERSION, str(letter.schema_version).encode("ascii")),
    ]
    if letter.worker is not None:
        headers.append((HEADER_WORKER, letter.worker.encode("utf-8")))
    if letter.event_id is not None:
        headers.append((HEADER_EVENT_ID, letter.event_id.encode("utf-8")))
    return headers


def decode_headers(
    headers: Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None],
) -> DeadLetter:
    """Read a :class:`DeadLetter` from a record's headers; the last of repeated names wins.

    Raises :class:`~schemas.errors.SchemaError` (``deadletter.invalid``) naming the header
    when a required one is missing or malformed.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        if not name.startswith(HEADER_PREFIX) or value is None:
            continue
        try:
            found[name] = value if isinstance(value, str) else bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(name, "is not UTF-8") from None

    def text(name: str) -> str:
        if name not in found:
            raise _invalid(name, "is missing")
        return found[name]

    def integer(name: str) -> int:
        value = text(name)
        if not value.isascii() or not value.lstrip("-").isdigit():
            raise _invalid(name, f"is not an integer: {value!r}")
        return int(value)

    failed_at_text = text(HEADER_FAILED_AT)
    try:
        failed_at = datetime.fromisoformat(failed_at_text)
    except ValueError:
        raise _invalid(HEADER_FAILED_AT, f"is not RFC 3339: {failed_at_text!r}") from None
    if failed_at.tzinfo is None:
        raise _invalid(HEADER_FAILED_AT, f"has no UTC offset: {failed_at_text!r}")
    return DeadLetter(
        error_code=text(HEADER_ERROR_CODE),
        error_message=text(HEADER_ERROR_MESSAGE),
        source_topic=text(HEADER_SOURCE_TOPIC),
        source_partition=integer(HEADER_SOURCE_PARTITION),
        source_offset=integer(HEADER_SOURCE_OFFSET),
        failed_at=failed_at,
        schema_version=integer(HEADER_SCHEMA_VERSION),
        worker=found.get(HEADER_WORKER),
        event_id=found.get(HEADER_EVENT_ID),
    )


def _invalid(name: str, problem: str) -> SchemaError:
    return SchemaError(DEADLETTER_INVALID, f"dead-letter header {name} {problem}", path=name)
