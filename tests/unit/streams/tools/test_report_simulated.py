"""`vitrine report` on a simulated year: its rankings are the generator's ground truth.

The windows are summed from :func:`streams.tools.simulate.generator.simulate`'s orders exactly
as the worker sums them (:mod:`tests.unit.streams.tools.simwindows`), with the true
categories; the report must rank categories, regions and local seasons as
:meth:`Simulation.ranking` does, and its forecast must beat seasonal-naive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.records import CategorySales
from streams.settings import Settings
from streams.tools import cli
from streams.tools.report import analyse, forecast
from streams.tools.report.analysis import Analysis, Dimension
from streams.tools.report.forecast import Forecast, Measure
from streams.tools.simulate.generator import REGIONS, Simulation, catalogue, simulate
from tests.unit.streams.tools.simwindows import category_sales_windows

START = datetime(2025, 1, 1, tzinfo=UTC)
SOUTH = frozenset(r.name for r in REGIONS if r.hemisphere == "south")


@pytest.fixture(scope="module")
def year() -> Simulation:
    return simulate(catalogue("report"), start=START, days=365, seed=7)


@pytest.fixture(scope="module")
def windows(year: Simulation) -> list[CategorySales]:
    return category_sales_windows(year.orders, year.category_of())


@pytest.fixture(scope="module")
def analysis(windows: list[CategorySales]) -> Analysis:
    return analyse(windows, southern=SOUTH, period="month")


@pytest.fixture(scope="module")
def year_forecast(windows: list[CategorySales]) -> Forecast:
    return forecast(windows)


def test_the_simulated_southern_regions_are_the_default_setting() -> None:
    assert Settings().orders.southern_regions == SOUTH


@pytest.mark.parametrize("by", ["category", "region", "season"])
def test_rankings_are_the_generators_ground_truth(
    year: Simulation, analysis: Analysis, by: Dimension
) -> None:
    rows = analysis.rankings[by]
    assert [r.name for r in rows] == year.ranking(by)
    truth = year.revenue_by(by)
    assert {r.name: r.revenue for r in rows} == pytest.approx(truth, abs=0.01)
    assert sum(r.share for r in rows) == pytest.approx(1.0)


def test_seasons_are_local_not_the_wires(analysis: Analysis, windows: list[CategorySales]) -> None:
    northern_only = analyse(windows, southern=frozenset())
    local = {r.name: r.revenue for r in analysis.rankings["season"]}
    wire = {r.name: r.revenue for r in northern_only.rankings["season"]}
    assert local != wire
    assert sum(local.values()) == pytest.approx(sum(wire.values()))
    # In December the south is in summer, the north in winter.
    december = {(p.hemisphere, p.season) for p in analysis.trend if p.month == "2025-12"}
    assert december == {("north", "winter"), ("south", "summer")}


def test_growth_is_december_against_november(analysis: Analysis, year: Simulation) -> None:
    assert analysis.span is not None
    assert (analysis.span.previous, analysis.span.current) == ("2025-11", "2025-12")
    in_month = [o for o in year.orders if o.created_at.month == 12]
    truth = year.revenue_by("category", orders=in_month)
    assert {r.name: r.current for r in analysis.rankings["category"]} == pytest.approx(
        truth, abs=0.01
    )
    assert all(m.previous_orders >= 50 for m in analysis.risers + analysis.fallers)


@pytest.mark.slow
@pytest.mark.parametrize("measure", ["revenue", "units"])
def test_holt_winters_beats_seasonal_naive_on_the_year(
    year_forecast: Forecast, measure: Measure
) -> None:
    assert year_forecast.note is None
    assert len(year_forecast.series) == 2 * 3 * len(REGIONS)
    hw = year_forecast.smape_of(measure, "holt_winters")
    naive = year_forecast.smape_of(measure, "seasonal_naive")
    assert hw < naive


def test_out_dir_gets_the_whole_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, year: Simulation
) -> None:
    five_weeks = [o for o in year.orders if o.created_at < datetime(2025, 2, 5, tzinfo=UTC)]
    ws = category_sales_windows(five_weeks, year.category_of())
    monkeypatch.setattr(
        "streams.tools.report.command.read_windows", lambda timeout_s: (ws, len(ws))
    )
    out = tmp_path / "weekly"
    result = CliRunner().invoke(cli.report_command, ["--out", str(out), "--period", "week"])
    assert result.exit_code == 0, result.output
    written = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "ranking.png",
        "heatmap.png",
        "seasonal_trend.png",
        "movers.png",
    } <= written
    assert {"forecast.png", "forecast_accuracy.csv", "forecast_next_7_days.csv"} <= written
    assert {"ranking_category.csv", "ranking_region.csv", "ranking_season.csv"} <= written
    assert not (tmp_path / "weekly.png").exists()
    assert f"report written to {out}/" in result.output
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in written - {"report.md"}:
        assert f"]({name})" in report, name
    assert "growth = revenue of 2025-W05 against 2025-W04" in report
    assert "sMAPE" in result.output
