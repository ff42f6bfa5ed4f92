"""The report in words: ``report.md`` (links the charts and CSV files) and the terminal text.

Both are drawn from the same rows so that the terminal and the file never disagree;
the terminal keeps the top rows and the forecast scores, the Markdown has it all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from schemas.sales import SEASONS
from streams.tools.report.analysis import Analysis, Dimension, Mover, RankRow
from streams.tools.report.forecast import HOLDOUT_DAYS, MEASURES, Forecast, Measure

__all__ = ["CHARTS", "markdown", "terminal"]

logger = logging.getLogger(__name__)

CHARTS = {
    "ranking": "ranking.png",
    "heatmap": "heatmap.png",
    "trend": "seasonal_trend.png",
    "movers": "movers.png",
    "forecast": "forecast.png",
}
"""Chart name -> file name in the output folder."""

_TITLES: dict[Dimension, str] = {
    "category": "category",
    "region": "region",
    "season": "local season",
}
_LATE_RULE = (
    "Windows count orders by their event time (`created_at`, UTC) and the report keeps "
    "each window's latest update. An order whose window had already expired "
    "(`VITRINE_SALES_WINDOW_EXPIRES_S` past its end, in order time) when it reached the "
    "worker is late: not counted in any window (`vitrine_sales_late_orders_total`), so "
    "not here either; it is still on `orders-enriched`."
)

_SEASON_GROWTH = [
    "Period-on-period growth of a season mostly shows one starting or ending (`new`, "
    "-100 %) or a partly covered one; compare seasons by their totals.",
    "",
]


def _growth(row: RankRow | Mover, analysis: Analysis) -> str:
    if analysis.span is None:
        return "n/a"
    if isinstance(row, RankRow) and row.growth is None:
        return "new" if row.current else "-"
    return f"{row.growth:+.1%}"


def _span_text(analysis: Analysis) -> str:
    if analysis.span is None:
        return f"fewer than two full {analysis.period}s of data: no growth"
    return analysis.span.describe()


def _compared(analysis: Analysis) -> str:
    span = analysis.span
    return f", {span.current} against {span.previous}" if span else ""


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def _md_ranking(analysis: Analysis, by: Dimension) -> list[str]:
    span = analysis.span
    previous, current = (span.previous, span.current) if span else ("previous", "current")
    rows = [
        [
            str(i),
            r.name,
            f"{r.revenue:,.2f}",
            f"{r.share:.1%}",
            f"{r.orders:,}",
            f"{r.units:,}",
            f"{r.previous:,.2f}",
            f"{r.current:,.2f}",
            _growth(r, analysis),
        ]
        for i, r in enumerate(analysis.rankings[by], 1)
    ]
    header = ["#", _TITLES[by], "revenue", "share", "orders", "units", previous, current, "growth"]
    return [
        f"## Ranking by {_TITLES[by]}",
        "",
        *_md_table(header, rows),
        *(_SEASON_GROWTH if by == "season" else []),
        f"CSV: [ranking_{by}.csv](ranking_{by}.csv)",
        "",
    ]


def _md_movers(analysis: Analysis) -> list[str]:
    rows = [
        [
            label,
            m.category,
            m.region,
            f"{m.previous:,.2f} ({m.previous_orders} orders)",
            f"{m.current:,.2f} ({m.current_orders} orders)",
            _growth(m, analysis),
        ]
        for label, moved in (("up", analysis.risers), ("down", analysis.fallers))
        for m in moved
    ]
    return [
        "## Top movers",
        "",
        f"Category x region pairs with at least {analysis.min_orders} orders in the previous "
        f"period, by revenue growth{_compared(analysis)}.",
        "",
        f"![top movers]({CHARTS['movers']})",
        "",
        *_md_table(["", "category", "region", "previous", "current", "growth"], rows),
        "CSV: [movers.csv](movers.csv)",
        "",
    ]


def _score_rows(result: Forecast) -> list[list[str]]:
    def cells(category: str | None) -> list[str]:
        return [
            f"{result.smape_of(ms, md, category):.1f}"
            for ms in MEASURES
            for md in ("seasonal_naive", "holt_winters")
        ]

    categories = sorted({s.category for s in result.series})
    return [["all", *cells(None)], *([c, *cells(c)] for c in categories)]


def _verdict(result: Forecast, measure: Measure) -> str:
    total = sum(s.measure == measure for s in result.series)
    lost = result.not_beaten(measure)
    overall = result.smape_of(measure, "holt_winters") < result.smape_of(measure, "seasonal_naive")
    text = (
        f"{measure}: Holt-Winters {'beats' if overall else 'does not beat'} seasonal-naive "
        f"overall, and beats it on {total - len(lost)} of {total} series"
    )
    if lost:
        text += "; not on " + ", ".join(f"{s.category}|{s.region}" for s in lost)
    return text + "."


def _md_forecast(result: Forecast) -> list[str]:
    head = ["## Demand forecast, next 7 days", ""]
    if result.note:
        return [*head, f"No forecast: {result.note}.", ""]
    held = result.holdout_days
    header = [
        "category",
        "revenue seasonal-naive",
        "revenue Holt-Winters",
        "units seasonal-naive",
        "units Holt-Winters",
    ]
    return [
        *head,
        f"Daily revenue and units per category x region (UTC days). Both models are fitted "
        f"on the days up to {held[0] - timedelta(days=1)} and scored on the held-out "
        f"{HOLDOUT_DAYS} days {held[0]} to {held[-1]}: seasonal-naive (same weekday last "
        "week) and Holt-Winters (additive weekly seasonality, damped additive trend, "
        "statsmodels). sMAPE, in percent (0 to 200, lower is better): mean over days and "
        "series of 2|F - A| / (|A| + |F|), a day with A = F = 0 counting 0; a day that "
        "sold nothing costs 200 % to any forecast above 0, so sparse series score badly.",
        "",
        *_md_table(header, _score_rows(result)),
        *(f"- {_verdict(result, m)}" for m in MEASURES),
        f"- Holt-Winters fits that did not converge: {result.unconverged} of "
        f"{len(result.series)} series (their forecasts are kept and scored).",
        "",
        f"![forecast]({CHARTS['forecast']})",
        "",
        "CSV: [forecast_accuracy.csv](forecast_accuracy.csv) (per series), "
        "[forecast_next_7_days.csv](forecast_next_7_days.csv) "
        f"({result.next_days[0]} to {result.next_days[-1]}, both models, per category x region)",
        "",
    ]


def markdown(analysis: Analysis, result: Forecast) -> str:
    """The whole of ``report.md``."""
    southern = ", ".join(sorted(analysis.southern)) or "none"
    season_rows = [
        [c, *(f"{v:,.2f}" for v in row)]
        for c, row in zip(analysis.categories, analysis.seasons, strict=True)
    ]
    lines = [
        "# Category sales report",
        "",
        f"{analysis.windows:,} windows, UTC days {analysis.first_day} to {analysis.last_day}; "
        f"{len(analysis.categories)} categories, {len(analysis.regions)} regions.",
        "",
        f"- Period: {analysis.period}; {_span_text(analysis)}.",
        f"- Seasons are local: regions south of the equator ({southern}; "
        "`VITRINE_SOUTHERN_HEMISPHERE_REGIONS`) have theirs six months on.",
        f"- {_LATE_RULE}",
        "",
        f"![ranking]({CHARTS['ranking']})",
        "",
        *(line for by in ("category", "region", "season") for line in _md_ranking(analysis, by)),
        "## Category x region",
        "",
        f"![revenue heat map]({CHARTS['heatmap']})",
        "",
        "CSV: [category_region_revenue.csv](category_region_revenue.csv)",
        "",
        "## Seasonal trend",
        "",
        f"![seasonal trend]({CHARTS['trend']})",
        "",
        "Revenue per category and local season:",
        "",
        *_md_table(["category", *SEASONS], season_rows),
        "CSV: [seasonal_trend.csv](seasonal_trend.csv) (per month and hemisphere, with the "
        "days of each month the data covers), "
        "[category_season_revenue.csv](category_season_revenue.csv)",
        "",
        *_md_movers(analysis),
        *_md_forecast(result),
    ]
    return "\n".join(lines)


def _text_ranking(analysis: Analysis, by: Dimension, top: int) -> list[str]:
    lines = [
        f"\nRevenue by {_TITLES[by]}",
        f"  {'#':>3}  {'name':<20} {'revenue':>12} {'share':>6} {'orders':>8} {'units':>8}"
        f" {'growth':>8}",
    ]
    for i, r in enumerate(analysis.rankings[by][:top], 1):
        lines.append(
            f"  {i:>3}  {r.name:<20} {r.revenue:>12,.2f} {r.share:>6.1%} {r.orders:>8,}"
            f" {r.units:>8,} {_growth(r, analysis):>8}"
        )
    return lines


def terminal(analysis: Analysis, result: Forecast, top: int) -> str:
    """What ``vitrine report`` prints: top rows, movers and the forecast's scores."""
    lines = [
        f"{analysis.windows:,} windows, {analysis.first_day} to {analysis.last_day} (UTC); "
        f"{_span_text(analysis)}",
    ]
    for by in ("category", "region", "season"):
        lines += _text_ranking(analysis, by, top)
    if analysis.span:
        lines.append(f"\nTop movers (>= {analysis.min_orders} orders in {analysis.span.previous})")
        for label, moved in (("up", analysis.risers), ("down", analysis.fallers)):
            for m in moved:
                lines.append(
                    f"  {label:<5} {m.category + ' | ' + m.region:<30}"
                    f" {m.previous:>10,.2f} -> {m.current:>10,.2f} {_growth(m, analysis):>8}"
                )
    lines.append("\nForecast, sMAPE % on the held-out week (lower is better)")
    if result.note:
        lines.append(f"  no forecast: {result.note}")
        return "\n".join(lines)
    lines.append(f"  {'':<14} {'revenue SN':>10} {'HW':>6} {'units SN':>9} {'HW':>6}")
    for name, *cells in _score_rows(result):
        lines.append(f"  {name:<14} {cells[0]:>10} {cells[1]:>6} {cells[2]:>9} {cells[3]:>6}")
    lines += [f"  {_verdict(result, m)}" for m in MEASURES]
    return "\n".join(lines)
