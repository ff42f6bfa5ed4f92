"""Next-week demand per category and region from the sales windows, and how wrong it was.

The windows are summed into UTC days per category x region, and two models
forecast each daily series: seasonal-naive (the same weekday last week: the
baseline, since weekly rhythm is the strongest pattern in orders) and
Holt-Winters (additive weekly season, damped additive trend). The last
:data:`HOLDOUT_DAYS` days are held out and both models scored by sMAPE
(:func:`smape`); the next week comes from a refit on every day. Under
:data:`MIN_FIT_DAYS` days plus the held-out week the report says "not enough
history". Method and measurements: docs/ANALYTICS.md.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from schemas.records import CategorySales

__all__ = [
    "HOLDOUT_DAYS",
    "MIN_FIT_DAYS",
    "DailySeries",
    "Forecast",
    "Measure",
    "Model",
    "SeriesForecast",
    "daily_series",
    "forecast",
    "holt_winters",
    "seasonal_naive",
    "smape",
]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]
Measure = Literal["revenue", "units"]
Model = Literal["seasonal_naive", "holt_winters"]
MEASURES: tuple[Measure, ...] = get_args(Measure)
MODELS: tuple[Model, ...] = get_args(Model)

WEEK_DAYS = 7
HOLDOUT_DAYS = 7
"""The held-out period: the last week of the data."""
MIN_FIT_DAYS = 2 * WEEK_DAYS
"""Days a model is fitted on at least: two weekly cycles."""


@dataclass(frozen=True)
class DailySeries:
    """Daily revenue and units of one category in one region, one value per day."""

    category: str
    region: str
    revenue: Array
    units: Array

    def values(self, measure: Measure) -> Array:
        """The series of ``measure``."""
        return self.revenue if measure == "revenue" else self.units


def daily_series(windows: Sequence[CategorySales]) -> tuple[list[date], list[DailySeries]]:
    """Every UTC day from the first window's to the last window's, and one series per pair.

    A window belongs to the day its start falls on; windows are an hour long by default
    (``VITRINE_SALES_WINDOW_S``), so they rarely straddle midnight.
    """
    if not windows:
        return [], []
    starts = [w.window_start.astimezone(UTC).date() for w in windows]
    first = min(starts)
    days = [first + timedelta(days=i) for i in range((max(starts) - first).days + 1)]
    sums: dict[tuple[str, str], tuple[Array, Array]] = defaultdict(
        lambda: (np.zeros(len(days)), np.zeros(len(days)))
    )
    for w, day in zip(windows, starts, strict=True):
        revenue, units = sums[(w.category, w.region)]
        revenue[(day - first).days] += w.revenue
        units[(day - first).days] += w.units
    return days, [DailySeries(c, r, rev, un) for (c, r), (rev, un) in sorted(sums.items())]


def smape(actual: Array, predicted: Array) -> float:
    """Symmetric mean absolute percentage error, in percent (0 to 200).

    ``100 / n * sum(2 * |F - A| / (|A| + |F|))`` over the ``n`` days, a day where
    both are 0 counting as no error. Unlike MAPE it stays finite on days that sold
    nothing, but such a day costs the full 200 % to any forecast above 0, so sparse
    series score badly whatever the model.
    """
    a, f = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if a.shape != f.shape or a.size == 0:
        raise ValueError(f"sMAPE needs two series of one length, got {a.shape} and {f.shape}")
    denominator = np.abs(a) + np.abs(f)
    terms = np.divide(2 * np.abs(f - a), denominator, out=np.zeros_like(a), where=denominator > 0)
    return float(100 * terms.mean())


def seasonal_naive(history: Array, horizon: int) -> Array:
    """Each future day is the same weekday of the last week of ``history``."""
    if history.size < WEEK_DAYS:
        raise ValueError(f"seasonal-naive needs {WEEK_DAYS} days, got {history.size}")
    last_week = history[-WEEK_DAYS:]
    return np.array([last_week[i % WEEK_DAYS] for i in range(horizon)], dtype=float)


def holt_winters(history: Array, horizon: int) -> tuple[Array, bool]:
    """Damped additive trend and additive weekly seasonality; the forecast and whether it converged.

    A constant history (a pair that never sold in the fitted days) forecasts that
    constant: the likelihood is flat there and the optimiser only warns.
    """
    if history.size < MIN_FIT_DAYS:
        raise ValueError(f"Holt-Winters needs {MIN_FIT_DAYS} days, got {history.size}")
    if np.ptp(history) == 0:
        return np.full(horizon, float(history[0])), True
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # noqa: PLC0415
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # noqa: PLC0415

    model = ExponentialSmoothing(
        history,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=WEEK_DAYS,
        initialization_method="estimated",
    )
    # The optimiser may stop short on a noisy, sparse series; its parameters are
    # still usable. Expected, so recorded and counted, not raised (pytest -W error).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fitted = model.fit()
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            logger.warning("Holt-Winters fit: %s", w.message)
    return np.clip(np.asarray(fitted.forecast(horizon), dtype=float), 0.0, None), converged


@dataclass(frozen=True)
class SeriesForecast:
    """Both models on one series: the held-out week, its errors and the next week."""

    category: str
    region: str
    measure: Measure
    actual: Array  # the held-out days
    holdout: dict[Model, Array]  # fitted before the held-out days
    smape: dict[Model, float]
    next_days: dict[Model, Array]  # fitted on every day
    converged: bool  # both Holt-Winters fits

    @property
    def holt_winters_wins(self) -> bool:
        """Holt-Winters' sMAPE is strictly below seasonal-naive's."""
        return self.smape["holt_winters"] < self.smape["seasonal_naive"]


def _forecast_series(series: DailySeries, measure: Measure) -> SeriesForecast:
    values = series.values(measure)
    fit, actual = values[:-HOLDOUT_DAYS], values[-HOLDOUT_DAYS:]
    hw_holdout, ok_holdout = holt_winters(fit, HOLDOUT_DAYS)
    hw_next, ok_next = holt_winters(values, HOLDOUT_DAYS)
    holdout: dict[Model, Array] = {
        "seasonal_naive": seasonal_naive(fit, HOLDOUT_DAYS),
        "holt_winters": hw_holdout,
    }
    return SeriesForecast(
        category=series.category,
        region=series.region,
        measure=measure,
        actual=actual,
        holdout=holdout,
        smape={m: smape(actual, f) for m, f in holdout.items()},
        next_days={
            "seasonal_naive": seasonal_naive(values, HOLDOUT_DAYS),
            "holt_winters": hw_next,
        },
        converged=ok_holdout and ok_next,
    )


@dataclass(frozen=True)
class Forecast:
    """The forecasts of every series, or why there are none (``note``)."""

    days: list[date]  # every day of the data
    daily: list[DailySeries]
    series: list[SeriesForecast]
    note: str | None = None

    @property
    def holdout_days(self) -> list[date]:
        return self.days[-HOLDOUT_DAYS:]

    @property
    def next_days(self) -> list[date]:
        return [self.days[-1] + timedelta(days=i) for i in range(1, HOLDOUT_DAYS + 1)]

    def smape_of(self, measure: Measure, model: Model, category: str | None = None) -> float:
        """Mean sMAPE over the series (of ``category``, or all): every day weighs the same."""
        scores = [
            s.smape[model]
            for s in self.series
            if s.measure == measure and category in (None, s.category)
        ]
        return float(np.mean(scores)) if scores else float("nan")

    def not_beaten(self, measure: Measure) -> list[SeriesForecast]:
        """Series of ``measure`` where Holt-Winters does not beat seasonal-naive."""
        return [s for s in self.series if s.measure == measure and not s.holt_winters_wins]

    @property
    def unconverged(self) -> int:
        return sum(not s.converged for s in self.series)


def forecast(windows: Sequence[CategorySales]) -> Forecast:
    """Fit, score and forecast every category x region series of ``windows``."""
    longest = max((w.window_end - w.window_start for w in windows), default=timedelta())
    if longest > timedelta(days=1):
        return Forecast([], [], [], note=f"windows of {longest} are longer than a day")
    days, daily = daily_series(windows)
    needed = MIN_FIT_DAYS + HOLDOUT_DAYS
    if len(days) < needed:
        note = (
            f"not enough history: {len(days)} days of data, the forecast needs {needed} "
            f"({MIN_FIT_DAYS} to fit, {HOLDOUT_DAYS} to hold out)"
        )
        return Forecast(days, daily, [], note=note)
    series = [_forecast_series(s, m) for s in daily for m in MEASURES]
    result = Forecast(days, daily, series)
    if result.unconverged:
        logger.info(
            "Holt-Winters: %d of %d series did not converge", result.unconverged, len(series)
        )
    return result
