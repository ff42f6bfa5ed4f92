"""Consumer lag: the records behind the end of each input partition this worker reads.

Only the inputs count (product-images and the sales deltas through Faust,
orders through the batch consumer): Faust's assignment also holds the window
table's changelog and its assignor topic, which the worker writes and never
reads while active, so they would report their whole length as lag.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from streams.worker import metrics
from streams.worker.batchconsumer import BatchConsumer

__all__ = ["record_consumer_lag"]

logger = logging.getLogger(__name__)


async def record_consumer_lag(
    consumer: Any, inputs: Collection[str], order_consumer: BatchConsumer
) -> None:
    """Set ``vitrine_consumer_lag`` for ``inputs`` (Faust's ``consumer``) and the orders."""
    try:
        assignment = consumer.assignment()
        # Drop the series of partitions this worker no longer owns.
        metrics.CONSUMER_LAG.clear()
        # The last offset each stream has read; Faust's public ``position``
        # is the fetch position, ahead of it by whatever is buffered.
        read = consumer._read_offset
        # The broker's end offsets: the fetcher's highwater stops moving while
        # fetching is paused (a stalled agent), so lag would stop at what it buffered.
        mine = [tp for tp in assignment if tp.topic in inputs]
        ends = await consumer.highwaters(*mine) if mine else {}
        for tp in mine:
            hw = ends.get(tp)
            pos = read.get(tp)
            if hw is not None:
                lag = hw - ((pos + 1) if pos is not None else 0)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))
        for tp, lag in (await order_consumer.lag()).items():
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
    except Exception:  # lag is best effort; never crash the worker for it
        logger.debug("consumer lag not available yet", exc_info=True)
