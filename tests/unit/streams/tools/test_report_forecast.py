"""The demand forecast of `vitrine report`: sMAPE, the two models, short histories."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from msgspec.structs import replace

from streams.tools.report.analysis import analyse
from streams.tools.report.forecast import (
    Forecast,
    SeriesForecast,
    daily_series,
    forecast,
    holt_winters,
    seasonal_naive,
    smape,
)
from streams.tools.report.summary import markdown, terminal
from tests.unit.streams.tools.test_report import window


def test_smape_is_symmetric_bounded_and_zero_on_empty_days() -> None:
    assert smape(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert smape(np.array([0.0, 0.0]), np.array([0.0, 0.0])) == 0.0
    assert smape(np.array([0.0]), np.array([5.0])) == pytest.approx(200.0)
    assert smape(np.array([100.0]), np.array([50.0])) == pytest.approx(100 * 50 / 75)
    assert smape(np.array([50.0]), np.array([100.0])) == pytest.approx(100 * 50 / 75)
    assert smape(np.array([100.0, 0.0]), np.array([50.0, 0.0])) == pytest.approx(100 * 50 / 150)
    with pytest.raises(ValueError, match="one length"):
        smape(np.array([1.0]), np.array([1.0, 2.0]))


def test_seasonal_naive_repeats_the_last_week() -> None:
    history = np.arange(14, dtype=float)
    assert seasonal_naive(history, 9).tolist() == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def test_holt_winters_beats_seasonal_naive_on_a_noisy_weekly_series() -> None:
    rng = np.random.default_rng(3)
    days = np.arange(120)
    truth = 100 + 0.3 * days + 20 * np.sin(2 * np.pi * days / 7)
    series = truth + rng.normal(0, 10, days.size)
    fit, actual = series[:-7], truth[-7:]
    hw, converged = holt_winters(fit, 7)
    assert converged
    assert smape(actual, hw) < smape(actual, seasonal_naive(fit, 7))


def test_holt_winters_of_a_constant_series_is_that_constant() -> None:
    hw, converged = holt_winters(np.zeros(21), 7)
    assert converged
    assert hw.tolist() == [0.0] * 7


def test_days_without_windows_sold_nothing() -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    ws = [
        window("produce", "eu-north", start, 10.0),
        window("produce", "eu-north", start + timedelta(hours=3), 5.0),
        window("produce", "eu-north", start + timedelta(days=3), 7.0),
        window("dairy", "eu-north", start + timedelta(days=1), 2.0),
    ]
    days, series = daily_series(ws)
    assert days == [date(2026, 3, 2) + timedelta(days=i) for i in range(4)]
    by = {(s.category, s.region): s for s in series}
    assert by[("produce", "eu-north")].revenue.tolist() == [15.0, 0.0, 0.0, 7.0]
    assert by[("produce", "eu-north")].units.tolist() == [4.0, 0.0, 0.0, 2.0]
    assert by[("dairy", "eu-north")].revenue.tolist() == [0.0, 2.0, 0.0, 0.0]


def test_short_history_says_so_instead_of_fitting() -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    ws = [window("produce", "eu-north", start + timedelta(days=d), 10.0 + d) for d in range(20)]
    result = forecast(ws)
    assert result.series == []
    assert result.note is not None
    assert result.note.startswith("not enough history: 20 days")
    analysis = analyse(ws, southern=frozenset())
    assert "not enough history" in markdown(analysis, result)
    assert "not enough history" in terminal(analysis, result, top=5)
    assert forecast([*ws, window("produce", "eu-north", start + timedelta(days=20), 1.0)]).series


def test_windows_longer_than_a_day_are_not_forecast() -> None:
    w = window("produce", "eu-north", datetime(2026, 3, 2, tzinfo=UTC), 10.0)
    weekly = replace(w, window_end=w.window_start + timedelta(days=7))
    assert forecast([weekly]).note == "windows of 7 days, 0:00:00 are longer than a day"


def scored(category: str, region: str, naive: float, hw: float) -> SeriesForecast:
    zeros = np.zeros(7)
    return SeriesForecast(
        category=category,
        region=region,
        measure="revenue",
        actual=zeros,
        holdout={"seasonal_naive": zeros, "holt_winters": zeros},
        smape={"seasonal_naive": naive, "holt_winters": hw},
        next_days={"seasonal_naive": zeros, "holt_winters": zeros},
        converged=True,
    )


def test_the_report_names_the_series_holt_winters_does_not_beat() -> None:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(28)]
    result = Forecast(
        days,
        [],
        [scored("produce", "eu-north", 40.0, 30.0), scored("dairy", "af-south", 50.0, 60.0)],
    )
    assert result.smape_of("revenue", "holt_winters") == pytest.approx(45.0)
    assert result.smape_of("revenue", "seasonal_naive", "dairy") == pytest.approx(50.0)
    assert [s.region for s in result.not_beaten("revenue")] == ["af-south"]
    analysis = analyse(
        [window("produce", "eu-north", datetime(2026, 1, 1, tzinfo=UTC), 1.0)], southern=frozenset()
    )
    text = terminal(analysis, result, top=5)
    assert "beats it on 1 of 2 series; not on dairy|af-south" in text
    lost = Forecast(days, [], [scored("dairy", "af-south", 50.0, 60.0)])
    assert "revenue: Holt-Winters does not beat seasonal-naive overall" in markdown(analysis, lost)
