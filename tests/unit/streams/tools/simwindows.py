"""CategorySales windows of a simulated year, summed as the worker sums them, in memory.

The worker (``streams/worker/enrich.py`` and ``windows.py``) turns each order into one
part per category (units, and revenue as the sum of ``round(quantity * unit_price,
4)``), folds the parts into the tumbling window of the order's ``created_at`` per
``category|region`` (one order more, revenue rounded to 4 places at every step) and
emits one CategorySales per window with the deterministic event_id and the northern
season of the window's start. The report tests need those windows without Kafka;
here the category is the simulation's true one (what a perfect labeller gives).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.records import SCHEMA_VERSION, CategorySales, OrderEvent
from schemas.sales import category_sales_event_id, season_of

__all__ = ["category_sales_windows"]

UPDATED_AT = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class _Window:
    orders: int = 0
    units: int = 0
    revenue: float = 0.0
    last_order_at_s: float = 0.0
    currency: str = ""


def category_sales_windows(
    orders: Iterable[OrderEvent], category_of: dict[str, str], window_s: int = 3600
) -> list[CategorySales]:
    """One CategorySales per (category, region, window) the orders touch."""
    windows: dict[tuple[str, str, float], _Window] = {}
    for order in orders:
        parts: dict[str, list[float]] = {}
        for item in order.items:
            acc = parts.setdefault(category_of[item.product_id], [0.0, 0.0])
            acc[0] += item.quantity
            acc[1] += round(item.quantity * item.unit_price, 4)
        ts = order.created_at.timestamp()
        for category, (units, revenue) in parts.items():
            w = windows.setdefault((category, order.region, ts - ts % window_s), _Window())
            w.orders += 1
            w.units += int(units)
            w.revenue = round(w.revenue + round(revenue, 4), 4)
            w.last_order_at_s = max(w.last_order_at_s, ts)
            w.currency = w.currency or order.currency
    out = []
    for (category, region, start), w in windows.items():
        ws = datetime.fromtimestamp(start, UTC)
        out.append(
            CategorySales(
                schema_version=SCHEMA_VERSION,
                event_id=category_sales_event_id(category, region, ws),
                occurred_at=datetime.fromtimestamp(w.last_order_at_s, UTC),
                category=category,
                region=region,
                window_start=ws,
                window_end=datetime.fromtimestamp(start + window_s, UTC),
                season=season_of(ws),
                orders=w.orders,
                units=w.units,
                revenue=w.revenue,
                currency=w.currency,
                updated_at=UPDATED_AT,
            )
        )
    return out
