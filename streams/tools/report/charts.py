"""The report's PNG charts, drawn with matplotlib's Agg backend from computed rows.

matplotlib is imported inside the drawing functions: it takes a second to load,
and nothing else in ``vitrine`` needs it. Every function takes what
:mod:`~streams.tools.report.analysis` or :mod:`~streams.tools.report.forecast`
computed and draws it; none computes a number the CSV files do not hold.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from schemas.sales import SEASONS
from streams.tools.report.analysis import Analysis
from streams.tools.report.forecast import WEEK_DAYS, Forecast

__all__ = [
    "render_forecast",
    "render_heatmap",
    "render_movers",
    "render_ranking",
    "render_trend",
]

logger = logging.getLogger(__name__)

_PANELS_MAX = 9  # categories drawn one panel each: more is unreadable
_HISTORY_DAYS = 8 * WEEK_DAYS  # days of actual sales before the held-out week


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(plt: Any, fig: Any, out_png: Path, note: str = "") -> None:
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1) if note else None)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _grid(plt: Any, panels: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    cols = min(3, panels)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def render_ranking(analysis: Analysis, out_png: Path, top: int = 12) -> None:
    """Revenue by category (stacked by region), by region and by local season."""
    plt = _pyplot()
    categories = analysis.categories[:top]
    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [3, 2, 1.4]}
    )
    bottom = np.zeros(len(categories))
    for j, region in enumerate(analysis.regions):
        vals = np.array([analysis.matrix[i][j] for i in range(len(categories))])
        ax1.bar(categories, vals, bottom=bottom, label=region)
        bottom += vals
    ax1.set_title("Revenue by category, stacked by region")
    ax1.set_ylabel("revenue")
    ax1.tick_params(axis="x", rotation=40)
    ax1.legend(title="region", fontsize=8)
    regions = analysis.rankings["region"]
    ax2.bar([r.name for r in regions], [r.revenue for r in regions], color="#4c78a8")
    ax2.set_title("Revenue by region")
    ax2.tick_params(axis="x", rotation=40)
    seasons = {r.name: r.revenue for r in analysis.rankings["season"]}
    ax3.bar(SEASONS, [seasons.get(s, 0.0) for s in SEASONS], color="#6a9f58")
    ax3.set_title("Revenue by local season")
    _save(plt, fig, out_png)


def render_heatmap(analysis: Analysis, out_png: Path, top: int = 20) -> None:
    """Revenue per category x region, each cell annotated with its share of all revenue."""
    plt = _pyplot()
    categories = analysis.categories[:top]
    matrix = np.array(analysis.matrix[: len(categories)])
    total = sum(r.revenue for r in analysis.rankings["category"]) or 1.0
    fig, ax = plt.subplots(figsize=(1.4 * len(analysis.regions) + 3, 0.5 * len(categories) + 2))
    image = ax.imshow(matrix, cmap="YlGnBu", aspect="auto")
    ax.set_xticks(range(len(analysis.regions)), analysis.regions, rotation=30, ha="right")
    ax.set_yticks(range(len(categories)), categories)
    bright = matrix.max() * 0.6 if matrix.size else 0.0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{value:,.0f}\n{value / total:.1%}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > bright else "black",
        )
    fig.colorbar(image, ax=ax, label="revenue")
    ax.set_title("Revenue by category x region (share of all revenue)")
    _save(plt, fig, out_png)


def render_trend(analysis: Analysis, out_png: Path) -> None:
    """Monthly revenue per category: northern and southern regions as two lines.

    Only whole months are drawn: a month the data starts or ends in is left
    out (unless no month is whole), and named under the chart with the days it
    covers.
    """
    plt = _pyplot()
    categories = analysis.categories[:_PANELS_MAX]
    partial = sorted({(p.month, p.days, p.month_days) for p in analysis.trend if p.partial})
    months = sorted({p.month for p in analysis.trend if not p.partial})
    note = "Partial months not drawn: "
    if not months:
        months, note = sorted({p.month for p in analysis.trend}), "Partial months: "
    note += ", ".join(f"{m} ({d} of {n} days)" for m, d, n in partial)
    fig, axes = _grid(plt, len(categories), (5.5, 3.4))
    for ax, category in zip(axes, categories, strict=True):
        for hemisphere, style in (("north", "-o"), ("south", "--s")):
            per = {
                p.month: p.revenue
                for p in analysis.trend
                if p.category == category and p.hemisphere == hemisphere
            }
            if per:
                ax.plot(months, [per.get(m, 0.0) for m in months], style, ms=3, label=hemisphere)
        ax.set_title(category)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend(fontsize=7, title="regions", title_fontsize=7)
    fig.suptitle("Revenue per month and category; southern seasons are six months on")
    _save(plt, fig, out_png, note if partial else "")


def render_movers(analysis: Analysis, out_png: Path) -> None:
    """Growth of the top risers and fallers (category x region), period on period."""
    plt = _pyplot()
    moved = analysis.risers + list(reversed(analysis.fallers))
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(moved), 2) + 1.5))
    if moved:
        labels = [
            f"{m.category} | {m.region}  ({m.previous:,.0f} -> {m.current:,.0f})" for m in moved
        ]
        growth = [100 * m.growth for m in moved]
        ax.barh(labels, growth, color=["#2e8b57" if g > 0 else "#c0392b" for g in growth])
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("revenue growth, %")
    else:
        ax.text(0.5, 0.5, "no movers", ha="center", va="center", transform=ax.transAxes)
    span = analysis.span
    compared = f"{span.current} vs {span.previous}" if span else "fewer than two full periods"
    ax.set_title(f"Top movers, {compared} (>= {analysis.min_orders} orders before)")
    _save(plt, fig, out_png)


def render_forecast(result: Forecast, out_png: Path) -> None:
    """Daily revenue per category (all regions): recent days, the held-out week, the next week."""
    plt = _pyplot()
    totals: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for s in result.series:
        if s.measure != "revenue":
            continue
        acc = totals[s.category]
        for name, values in (
            ("actual", s.actual),
            *((f"holdout {m}", v) for m, v in s.holdout.items()),
            *((f"next {m}", v) for m, v in s.next_days.items()),
        ):
            acc[name] = acc.get(name, np.zeros(len(values))) + values
    history: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(result.days)))
    for d in result.daily:
        history[d.category] = history[d.category] + d.revenue
    categories = sorted(totals, key=lambda c: -float(history[c].sum()))[:_PANELS_MAX]
    fig, axes = _grid(plt, max(len(categories), 1), (6.0, 3.4))
    start = max(0, len(result.days) - _HISTORY_DAYS)
    for ax, category in zip(axes, categories, strict=False):
        acc = totals[category]
        ax.plot(result.days[start:], history[category][start:], color="black", lw=1, label="actual")
        held = result.holdout_days
        ahead = result.next_days
        ax.plot(held, acc["holdout seasonal_naive"], "--", color="#e67e22", label="seasonal-naive")
        ax.plot(held, acc["holdout holt_winters"], "--", color="#2471a3", label="Holt-Winters")
        ax.plot(ahead, acc["next seasonal_naive"], ":", color="#e67e22")
        ax.plot(ahead, acc["next holt_winters"], ":", color="#2471a3", lw=2)
        ax.axvspan(held[0], held[-1] + timedelta(days=1), color="#eeeeee", zorder=0)
        ax.set_title(category)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.legend(fontsize=7)
    if not categories:
        axes[0].text(0.5, 0.5, result.note or "no forecast", ha="center", va="center")
    fig.suptitle("Daily revenue: held-out week (shaded, dashed) and next 7 days (dotted)")
    _save(plt, fig, out_png)
