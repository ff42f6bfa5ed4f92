"""``vitrine report``: read ``category-sales``, analyse, forecast, write the folder, print.

Reading the topic needs only :mod:`schemas` and kafka-python, as any analytics
consumer would; the numbers come from the pure functions of
:mod:`~streams.tools.report.analysis` and :mod:`~streams.tools.report.forecast`,
so :func:`write_report` runs the same on windows built in memory (the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from schemas.records import CategorySales
from streams.settings import get_settings
from streams.tools.report import charts
from streams.tools.report.analysis import Analysis, analyse
from streams.tools.report.forecast import Forecast, forecast
from streams.tools.report.history import windows_from_records
from streams.tools.report.periods import Period
from streams.tools.report.summary import CHARTS, markdown, terminal
from streams.tools.report.tables import write_tables

__all__ = ["read_windows", "run_report", "write_report"]

logger = logging.getLogger(__name__)


def read_windows(timeout_s: float) -> tuple[list[CategorySales], int]:
    """The latest update of every window on the topic, and how many records were read.

    Every record from the beginning, old key form and new
    (:mod:`~streams.tools.report.history`), so no window the topic keeps is missed.
    """
    from kafka import TopicPartition  # noqa: PLC0415

    from streams.tools.kafka_clients import make_consumer, read_from  # noqa: PLC0415

    settings = get_settings()
    consumer = make_consumer(settings)
    try:
        parts = consumer.partitions_for_topic(settings.topics.category_sales) or set()
        start = {TopicPartition(settings.topics.category_sales, p): 0 for p in parts}
        ends = consumer.end_offsets(list(start)) if start else {}

        # Done by position, not by count: compaction leaves gaps in the offsets, so a
        # compacted topic holds fewer records than its end offsets add up to.
        def read_to_end(_: object) -> bool:
            return all(consumer.position(tp) >= end for tp, end in ends.items())

        records = read_from(consumer, start, done=read_to_end, timeout_s=timeout_s)
    finally:
        consumer.close()
    return windows_from_records(records), len(records)


def write_report(analysis: Analysis, result: Forecast, out_dir: Path) -> list[Path]:
    """Write the charts, the CSV files and ``report.md`` into ``out_dir``; return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts.render_ranking(analysis, out_dir / CHARTS["ranking"])
    charts.render_heatmap(analysis, out_dir / CHARTS["heatmap"])
    charts.render_trend(analysis, out_dir / CHARTS["trend"])
    charts.render_movers(analysis, out_dir / CHARTS["movers"])
    drawn = [out_dir / name for key, name in CHARTS.items() if key != "forecast"]
    if result.series:
        charts.render_forecast(result, out_dir / CHARTS["forecast"])
        drawn.append(out_dir / CHARTS["forecast"])
    tables = write_tables(analysis, result, out_dir)
    summary = out_dir / "report.md"
    summary.write_text(markdown(analysis, result), encoding="utf-8")
    return [summary, *drawn, *tables]


def report_windows(
    windows: Sequence[CategorySales],
    out_dir: Path,
    *,
    southern: frozenset[str],
    period: Period = "month",
    min_orders: int = 50,
    top: int = 10,
) -> tuple[str, list[Path]]:
    """Analyse and forecast ``windows``, write ``out_dir``; the terminal text and the files.

    ``top`` bounds the printed tables only: the files hold every row.
    """
    analysis = analyse(windows, southern=southern, period=period, min_orders=min_orders)
    result = forecast(windows)
    files = write_report(analysis, result, out_dir)
    return terminal(analysis, result, top), files


def run_report(
    *, out_dir: Path, timeout_s: float, top: int, period: Period = "month", min_orders: int = 50
) -> int:
    """Read the topic, print the summary, write the report folder; return an exit code."""
    settings = get_settings()
    windows, updates = read_windows(timeout_s)
    if not windows:
        print(f"no category sales on {settings.topics.category_sales} yet; run `vitrine demo`")
        return 1
    print(f"{updates:,} updates read from {settings.topics.category_sales}")
    text, files = report_windows(
        windows,
        out_dir,
        southern=settings.orders.southern_regions,
        period=period,
        min_orders=min_orders,
        top=top,
    )
    print(text)
    print(f"\nreport written to {out_dir}/: report.md and {len(files) - 1} charts and CSV files")
    return 0
