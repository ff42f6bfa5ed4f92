"""The consumed record as the pipeline sees it, independent of Faust's event type."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Record", "Rejected", "from_faust_event"]


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record: raw key and value plus where it came from."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def key_text(self) -> str:
        return self.key.decode("utf-8", "replace") if self.key else ""


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be processed, with a stable reason code."""

    record: Record
    code: str
    message: str


def from_faust_event(event: Any) -> Record:
    """Build a :class:`Record` from a Faust event (raw key and value serializers)."""
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
    return Record(
        key=key,
        value=value if value is not None else b"",
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else 0,
        headers=headers,
    )
