"""Keys, ids and seasons of category-sales events, shared by the producer and consumers.

- key: ``f"{category}|{region}|{window_start}"``, the start in UTC as
  ``YYYY-MM-DDTHH:MM:SSZ``, so that every window keeps its own record on the
  compacted topic (records of the older ``category|region`` form stay on it: name
  a window by its value, never by its key);
- event_id: the first 32 hex digits of SHA-256 over the key, the same for every
  update of a window;
- season: the meteorological season of ``window_start``, northern hemisphere
  (``season_of(..., hemisphere="south")`` for the local one south of the equator).

Other languages reproduce these from the rules in schemas/README.md.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from schemas.records import Season

__all__ = [
    "SEASONS",
    "Hemisphere",
    "category_sales_event_id",
    "category_sales_key",
    "season_of",
    "utc_rfc3339",
]

Hemisphere = Literal["north", "south"]

SEASONS: tuple[Season, ...] = ("winter", "spring", "summer", "autumn")
"""The seasons in the order of a year that starts in winter."""

_SEASONS: tuple[Season, ...] = (
    "winter",  # December (index 0 after month % 12)
    "winter",
    "winter",
    "spring",
    "spring",
    "spring",
    "summer",
    "summer",
    "summer",
    "autumn",
    "autumn",
    "autumn",
)


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def season_of(moment: datetime, hemisphere: Hemisphere = "north") -> Season:
    """Return the meteorological season of ``moment`` (UTC month) in ``hemisphere``."""
    month = _require_aware(moment, "moment").month
    if hemisphere == "south":
        month += 6
    elif hemisphere != "north":
        raise ValueError(f"hemisphere must be 'north' or 'south', got {hemisphere!r}")
    return _SEASONS[month % 12]


def utc_rfc3339(moment: datetime) -> str:
    """Return ``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SSZ`` (sub-seconds dropped)."""
    return _require_aware(moment, "moment").strftime("%Y-%m-%dT%H:%M:%SZ")


def category_sales_key(category: str, region: str, window_start: datetime) -> str:
    """Return the Kafka key ``category|region|window_start`` of a category-sales event.

    ``window_start`` must be timezone-aware; it is written in UTC as
    ``YYYY-MM-DDTHH:MM:SSZ``, so one instant always gives one key.
    """
    if "|" in category or "|" in region:
        raise ValueError(f"category {category!r} and region {region!r} must not contain '|'")
    return f"{category}|{region}|{utc_rfc3339(window_start)}"


def category_sales_event_id(category: str, region: str, window_start: datetime) -> str:
    """Return the deterministic event_id of the window ``(category, region, window_start)``."""
    key = category_sales_key(category, region, window_start)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
