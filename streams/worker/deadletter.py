"""Dead-lettering: the original key and bytes, with headers saying why and from where.

The header format is the contract in ``schemas/DEADLETTER.md`` (and
:mod:`schemas.deadletter` reads it back). One bad record is dead-lettered on
its own; the rest of its batch goes on.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from schemas.deadletter import DeadLetter, encode_headers
from schemas.records import SCHEMA_VERSION
from streams.worker import metrics
from streams.worker.consumed import Rejected

__all__ = ["WORKER_ID", "dead_letter_headers"]

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def dead_letter_headers(rejected: Rejected, dlq_topic: str) -> list[tuple[str, bytes]]:
    """Headers of the dead-letter record for ``rejected``; counts it in the metrics."""
    rec = rejected.record
    metrics.DEAD_LETTERED.labels(dlq_topic, rejected.code).inc()
    logger.info(
        "dead-lettering %s[%d]@%d: %s: %s",
        rec.topic,
        rec.partition,
        rec.offset,
        rejected.code,
        rejected.message[:200],
    )
    letter = DeadLetter(
        error_code=rejected.code,
        error_message=rejected.message,
        source_topic=rec.topic,
        source_partition=rec.partition,
        source_offset=rec.offset,
        failed_at=datetime.now(UTC),
        schema_version=SCHEMA_VERSION,
        worker=WORKER_ID,
    )
    return encode_headers(letter, rec.headers)
