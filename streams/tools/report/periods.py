"""Periods of the report: the last full week, month or quarter of the data and the one before.

Growth compares whole periods: a month that has only started would always show a
fall. So the "current" period is the *last full* one (weeks start on Monday, all in
UTC) and growth is its revenue against the full period before it. The data covers
the UTC days from its first window's day to its last window's day, and a period is
full when every one of its days is covered: on a live stream the current day counts
as covered once one of its windows has arrived. With fewer than two full periods
there is no growth (rather than a misleading one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from schemas.records import CategorySales

__all__ = ["Period", "PeriodSpan", "compare_periods", "data_days"]

logger = logging.getLogger(__name__)

Period = Literal["week", "month", "quarter"]


def _period_start(moment: datetime, period: Period) -> datetime:
    day = moment.astimezone(UTC).date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    else:
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return datetime.combine(day, time(), UTC)


def _next_start(start: datetime, period: Period) -> datetime:
    if period == "week":
        return start + timedelta(days=7)
    months = 1 if period == "month" else 3
    year, month = divmod(start.month - 1 + months, 12)
    return start.replace(year=start.year + year, month=month + 1)


@dataclass(frozen=True)
class PeriodSpan:
    """The two periods that growth compares: ``[previous_start, current_start)`` and the next."""

    period: Period
    previous_start: datetime
    current_start: datetime
    current_end: datetime

    def label(self, start: datetime) -> str:
        """``2025-W52``, ``2025-12`` or ``2025-Q4`` for the period starting at ``start``."""
        if self.period == "week":
            year, week, _ = start.isocalendar()
            return f"{year}-W{week:02d}"
        if self.period == "month":
            return f"{start:%Y-%m}"
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"

    @property
    def current(self) -> str:
        return self.label(self.current_start)

    @property
    def previous(self) -> str:
        return self.label(self.previous_start)

    def describe(self) -> str:
        """One sentence for the outputs: what growth compares."""
        return (
            f"growth = revenue of {self.current} against {self.previous} "
            f"(the last two full {self.period}s of data, UTC)"
        )

    def which(self, window: CategorySales) -> int | None:
        """0 for the previous period, 1 for the current one, None outside both."""
        if self.previous_start <= window.window_start < self.current_start:
            return 0
        if self.current_start <= window.window_start < self.current_end:
            return 1
        return None


def data_days(windows: Sequence[CategorySales]) -> tuple[date, date]:
    """First and last UTC day that hold a window."""
    starts = [w.window_start.astimezone(UTC) for w in windows]
    return min(starts).date(), max(starts).date()


def compare_periods(windows: Sequence[CategorySales], period: Period) -> PeriodSpan | None:
    """The last full ``period`` of the data and the one before it; None with fewer than two."""
    if not windows:
        return None
    first, last = data_days(windows)
    begin = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    current = _period_start(end - timedelta(microseconds=1), period)
    if _next_start(current, period) > end:
        current = _period_start(current - timedelta(days=1), period)
    previous = _period_start(current - timedelta(days=1), period)
    if previous < begin:
        return None
    return PeriodSpan(period, previous, current, _next_start(current, period))
