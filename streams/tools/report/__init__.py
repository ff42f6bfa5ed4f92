"""``vitrine report``: category sales an analyst can act on, and a next-week forecast.

One module per step, so the numbers are checked without Kafka or matplotlib:

- :mod:`.analysis`: rankings by category, region and local season with share and
  period-on-period growth, the category x region matrix, the seasonal trend, top
  movers (pure functions over ``CategorySales`` windows), :mod:`.periods` for what
  growth compares;
- :mod:`.forecast`: daily demand per category x region, seasonal-naive against
  Holt-Winters on a held-out week, sMAPE, the next 7 days;
- :mod:`.charts` (PNG), :mod:`.tables` (CSV), :mod:`.summary` (``report.md`` and the
  terminal text): the same rows, drawn and written;
- :mod:`.history`: the latest update of every window from the topic's records, the
  same before and after Kafka's log cleaner has run;
- :mod:`.command`: reads the topic and writes the output folder.
"""

from __future__ import annotations

from streams.tools.report.analysis import analyse, latest_windows, rank
from streams.tools.report.command import report_windows, run_report, write_report
from streams.tools.report.forecast import forecast

__all__ = [
    "analyse",
    "forecast",
    "latest_windows",
    "rank",
    "report_windows",
    "run_report",
    "write_report",
]
