"""The report's CSV files: every number of the charts and the summary, for a spreadsheet.

One file per table, plain ``csv`` with a header row, money rounded to cents, shares
and growth as fractions (0.125 is 12.5 %); an empty cell is a value that does not
exist (growth with nothing in the previous period), never a zero.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from schemas.sales import SEASONS
from streams.tools.report.analysis import Analysis, Dimension, Mover
from streams.tools.report.forecast import MEASURES, MODELS, Forecast, Measure, SeriesForecast

__all__ = ["write_tables"]

logger = logging.getLogger(__name__)

Cell = str | int | float


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _fraction(value: float | None) -> Cell:
    return "" if value is None else round(value, 4)


def _rankings(analysis: Analysis, out_dir: Path) -> list[Path]:
    span = analysis.span
    previous, current = (span.previous, span.current) if span else ("", "")
    header = (
        "rank",
        "name",
        "revenue",
        "orders",
        "units",
        "share",
        "previous_period",
        "previous_revenue",
        "current_period",
        "current_revenue",
        "growth",
    )
    by: Dimension
    paths = []
    for by, rows in analysis.rankings.items():
        paths.append(
            _write(
                out_dir / f"ranking_{by}.csv",
                header,
                (
                    (
                        i,
                        r.name,
                        r.revenue,
                        r.orders,
                        r.units,
                        _fraction(r.share),
                        previous,
                        r.previous,
                        current,
                        r.current,
                        _fraction(r.growth) if span else "",
                    )
                    for i, r in enumerate(rows, 1)
                ),
            )
        )
    return paths


def _movers(analysis: Analysis, out_dir: Path) -> Path:
    span = analysis.span
    previous, current = (span.previous, span.current) if span else ("", "")

    def rows(direction: str, moved: list[Mover]) -> list[list[Cell]]:
        return [
            [
                direction,
                m.category,
                m.region,
                previous,
                m.previous,
                m.previous_orders,
                current,
                m.current,
                m.current_orders,
                _fraction(m.growth),
            ]
            for m in moved
        ]

    return _write(
        out_dir / "movers.csv",
        (
            "direction",
            "category",
            "region",
            "previous_period",
            "previous_revenue",
            "previous_orders",
            "current_period",
            "current_revenue",
            "current_orders",
            "growth",
        ),
        rows("up", analysis.risers) + rows("down", analysis.fallers),
    )


def _forecast(result: Forecast, out_dir: Path) -> list[Path]:
    if not result.series:
        return []
    accuracy = _write(
        out_dir / "forecast_accuracy.csv",
        (
            "category",
            "region",
            "measure",
            "smape_seasonal_naive",
            "smape_holt_winters",
            "holt_winters_wins",
            "holt_winters_converged",
        ),
        (
            (
                s.category,
                s.region,
                s.measure,
                round(s.smape["seasonal_naive"], 2),
                round(s.smape["holt_winters"], 2),
                s.holt_winters_wins,
                s.converged,
            )
            for s in result.series
        ),
    )
    by_pair: dict[tuple[str, str], dict[Measure, SeriesForecast]] = {}
    for s in result.series:
        by_pair.setdefault((s.category, s.region), {})[s.measure] = s
    columns = [f"{measure}_{model}" for measure in MEASURES for model in MODELS]
    rows: list[list[Cell]] = []
    for (category, region), per in by_pair.items():
        better = "holt_winters" if per["revenue"].holt_winters_wins else "seasonal_naive"
        for i, day in enumerate(result.next_days):
            values = [round(float(per[ms].next_days[md][i]), 2) for ms in MEASURES for md in MODELS]
            rows.append([category, region, day.isoformat(), *values, better])
    ahead = _write(
        out_dir / "forecast_next_7_days.csv",
        ("category", "region", "date", *columns, "revenue_better_on_holdout"),
        rows,
    )
    return [accuracy, ahead]


def write_tables(analysis: Analysis, result: Forecast, out_dir: Path) -> list[Path]:
    """Write every CSV file of the report into ``out_dir``; return their paths."""
    categories = analysis.categories
    return [
        *_rankings(analysis, out_dir),
        _write(
            out_dir / "category_region_revenue.csv",
            ("category", *analysis.regions),
            ([c, *row] for c, row in zip(categories, analysis.matrix, strict=True)),
        ),
        _write(
            out_dir / "category_season_revenue.csv",
            ("category", *SEASONS),
            ([c, *row] for c, row in zip(categories, analysis.seasons, strict=True)),
        ),
        _write(
            out_dir / "seasonal_trend.csv",
            (
                "category",
                "hemisphere",
                "month",
                "local_season",
                "revenue",
                "units",
                "days_in_data",
                "days_in_month",
            ),
            (
                (
                    p.category,
                    p.hemisphere,
                    p.month,
                    p.season,
                    p.revenue,
                    p.units,
                    p.days,
                    p.month_days,
                )
                for p in analysis.trend
            ),
        ),
        _movers(analysis, out_dir),
        *_forecast(result, out_dir),
    ]
