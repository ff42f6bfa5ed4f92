"""What ``vitrine report`` reads: the latest update of every window on ``category-sales``.

The topic is compacted and read from the beginning, so the reading must give the
same windows whether or not Kafka's log cleaner has run:

- **Per key and window, the last record wins**, in offset order, as it does for
  the cleaner: every update of one window has the same key
  (``category|region|window_start``, :func:`schemas.sales.category_sales_key`), and
  a tombstone (a null value; vitrine writes none) deletes what its key held. Offset
  order, not ``updated_at``, decides here because it is what the cleaner keeps,
  and two workers' clocks need not agree.
- **Records of the old key form are read too.** Earlier workers keyed by
  ``category|region`` alone, so one key held many windows; the windows the cleaner
  has not removed yet are history like any other, and the cleaner keeps the last
  window of each pair forever. A window open while the workers were upgraded has
  an update under each key form, on different partitions with no offset order
  between them: there the latest ``updated_at`` wins
  (:func:`~streams.tools.report.analysis.latest_windows`). A window is named by the
  value's ``category``, ``region`` and ``window_start``, never by the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from schemas import codec
from schemas.records import CategorySales
from streams.tools.report.analysis import latest_windows

__all__ = ["SalesRecord", "windows_from_records"]


class SalesRecord(Protocol):
    """The fields of a Kafka record the reading needs (kafka-python's ``ConsumerRecord``)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def windows_from_records(records: Iterable[SalesRecord]) -> list[CategorySales]:
    """The latest update of every (category, region, window) among ``records``.

    ``records`` are category-sales records in any order, of either key form; see
    the module docstring for which update wins.
    """
    held: dict[tuple[int, bytes | None], dict[tuple[str, str, datetime], CategorySales]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value is None:
            held.pop((r.partition, r.key), None)
            continue
        w = codec.decode_category_sales(r.value)
        held.setdefault((r.partition, r.key), {})[(w.category, w.region, w.window_start)] = w
    return latest_windows(w for windows in held.values() for w in windows.values())
