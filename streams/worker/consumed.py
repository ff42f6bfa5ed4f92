"""The consumed record as the pipeline sees it, independent of Faust's event type."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from schemas.errors import SchemaError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["ConsumedRecord", "Rejected", "decode_or_reject", "from_faust_event"]


@dataclasses.dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One consumed Kafka record: raw key and value plus where it came from."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be processed, with a stable reason code."""

    record: ConsumedRecord
    code: str
    message: str


def from_faust_event(event: Any) -> ConsumedRecord:
    """Build a :class:`ConsumedRecord` from a Faust event (raw key and value serializers)."""
    msg = event.message
    value = event.value
    if isinstance(value, str):
        value = value.encode()
    key = event.key
    if isinstance(key, str):
        key = key.encode()
    raw_headers = msg.headers or ()
    if isinstance(raw_headers, dict):
        raw_headers = raw_headers.items()
    headers = tuple(
        (str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in raw_headers
    )
    return ConsumedRecord(
        key=key,
        value=value if value is not None else b"",
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else 0,
        headers=headers,
    )


def decode_or_reject(
    records: Sequence[ConsumedRecord],
    decode: Callable[[bytes], T],
    out: list[R | Rejected | None],
) -> dict[int, T]:
    """Decode each record's value; a contract violation becomes its :class:`Rejected`.

    Returns the decoded events by position; ``out[i]`` is set for each rejected one.
    """
    events: dict[int, T] = {}
    for i, rec in enumerate(records):
        try:
            events[i] = decode(rec.value)
        except SchemaError as exc:
            out[i] = Rejected(rec, exc.code, str(exc))
    return events
