"""``vitrine report``: rank category sales by category, region and season.

Reads the ``category-sales`` topic from the beginning, keeps the latest update
of every window (updates replace: same key, same ``event_id``), and prints
three rankings (category, region, season) plus a category x season table; it
also writes a PNG chart of revenue by category, stacked by region, and by
season. Only :mod:`schemas` is needed to read the topic, as any analytics
consumer would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from schemas import codec
from schemas.records import CategorySales
from streams.settings import get_settings
from streams.tools.kafka_clients import make_consumer, read_from

__all__ = ["latest_windows", "rank", "render_chart", "run_report"]

SEASONS = ("winter", "spring", "summer", "autumn")


def latest_windows(values: Iterable[CategorySales]) -> list[CategorySales]:
    """The last update of each (category, region, window) in read order."""
    latest: dict[tuple[str, str, object], CategorySales] = {}
    for v in values:
        key = (v.category, v.region, v.window_start)
        prev = latest.get(key)
        if prev is None or v.updated_at >= prev.updated_at:
            latest[key] = v
    return list(latest.values())


def rank(windows: Iterable[CategorySales], by: str) -> list[tuple[str, float, int, int]]:
    """Revenue, orders and units summed per ``by`` (category, region or season), best first."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for w in windows:
        acc = sums[str(getattr(w, by))]
        acc[0] += w.revenue
        acc[1] += w.orders
        acc[2] += w.units
    rows = [(k, round(v[0], 2), int(v[1]), int(v[2])) for k, v in sums.items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def _print_ranking(title: str, rows: list[tuple[str, float, int, int]], top: int) -> None:
    print(f"\n{title}")
    print(f"  {'#':>3}  {'name':<24} {'revenue':>12} {'orders':>8} {'units':>8}")
    for i, (name, revenue, orders, units) in enumerate(rows[:top], 1):
        print(f"  {i:>3}  {name:<24} {revenue:>12.2f} {orders:>8} {units:>8}")


def render_chart(windows: list[CategorySales], out_png: Path, top: int = 12) -> None:
    """Revenue by category (stacked by region) and by season, as one PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    categories = [r[0] for r in rank(windows, "category")[:top]]
    regions = [r[0] for r in rank(windows, "region")]
    per: dict[tuple[str, str], float] = defaultdict(float)
    for w in windows:
        per[(w.category, w.region)] += w.revenue
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 1]})
    bottom = [0.0] * len(categories)
    for region in regions:
        vals = [per[(c, region)] for c in categories]
        ax1.bar(categories, vals, bottom=bottom, label=region)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax1.set_title("Revenue by category, stacked by region")
    ax1.set_ylabel("revenue")
    ax1.tick_params(axis="x", rotation=40)
    ax1.legend(title="region", fontsize=8)
    seasons = {r[0]: r[1] for r in rank(windows, "season")}
    ax2.bar(SEASONS, [seasons.get(s, 0.0) for s in SEASONS], color="#6a9f58")
    ax2.set_title("Revenue by season")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def run_report(*, out_png: Path, timeout_s: float, top: int) -> int:
    """Read the topic, print the rankings, write the chart; return an exit code."""
    settings = get_settings()
    consumer = make_consumer(settings)
    try:
        from kafka import TopicPartition  # noqa: PLC0415

        parts = consumer.partitions_for_topic(settings.topic_category_sales) or set()
        start = {TopicPartition(settings.topic_category_sales, p): 0 for p in parts}
        ends = consumer.end_offsets(list(start)) if start else {}
        total = sum(ends.values())
        records = read_from(consumer, start, done=lambda rs: len(rs) >= total, timeout_s=timeout_s)
    finally:
        consumer.close()
    windows = latest_windows(codec.decode_category_sales(r.value) for r in records)
    if not windows:
        print(f"no category sales on {settings.topic_category_sales} yet; run `vitrine demo`")
        return 1
    print(f"{len(windows)} windows from {len(records)} updates on {settings.topic_category_sales}")
    _print_ranking("Revenue by category", rank(windows, "category"), top)
    _print_ranking("Revenue by region", rank(windows, "region"), top)
    _print_ranking("Revenue by season", rank(windows, "season"), top)
    render_chart(windows, out_png, top=top)
    print(f"\nchart written to {out_png}")
    return 0
