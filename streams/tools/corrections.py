"""``vitrine corrections export``: reviewers' corrected photos as a data set for training.

Reads the whole compacted ``label-corrections`` topic into the worker's own
:class:`~streams.worker.corrections.CorrectionsView` (the latest label decision
of each photo), then ``product-images`` as far back as its retention keeps it,
and writes every corrected photo found inline there into
``<out>/<label>/<sha256>.<format>``, the class-per-folder layout ``vitrine train``
reads, and one line per corrected photo, found or not, into
``<out>/corrections.csv``. A photo listed only by ``image_uri`` is not fetched
(its sha256 is unknown without its bytes): its line has no path.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from inference.serving.decode import sniff_format
from inference.serving.errors import ImageError
from schemas import codec
from schemas.errors import SchemaError
from streams.settings import Settings
from streams.tools.kafka_clients import end_offsets, make_consumer, read_from
from streams.worker.corrections import CorrectionsView

__all__ = ["COLUMNS", "ExportResult", "export_corrections", "run_export"]

#: The columns of ``corrections.csv``.
COLUMNS = ("image_sha256", "label", "category", "reviewer", "correction_id", "decided_at", "path")

_EXTENSIONS = {"jpeg": "jpg"}
_UNSAFE = re.compile(r"[^\w .()+,-]")

Records = Iterable[tuple[bytes | None, bytes | None]]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    #: Photos with a label decision.
    corrected: int
    #: Of them, photos found inline on product-images and written.
    written: int
    csv_path: Path


def _folder(label: str) -> str:
    """A label as one safe folder name."""
    name = _UNSAFE.sub("_", label).strip(" .")
    return name or "_"


def export_corrections(
    corrections: Records,
    listings: Records,
    out: Path,
    *,
    max_image_bytes: int = codec.DEFAULT_MAX_IMAGE_BYTES,
) -> ExportResult:
    """Write the corrected photos of ``listings`` and the list of every corrected photo."""
    view = CorrectionsView()
    view.apply(corrections)
    photos = view.photos()
    paths: dict[str, Path] = {}
    for _key, value in listings:
        if len(paths) == len(photos):
            break
        if value is None:
            continue
        try:
            event = codec.decode_product_image(value)
            if event.image_b64 is None:
                continue
            raw = codec.decode_inline_image(event, max_bytes=max_image_bytes)
            sha = hashlib.sha256(raw).hexdigest()
            if sha not in photos or sha in paths:
                continue
            kind = sniff_format(raw)
        except (SchemaError, ImageError):
            continue
        path = out / _folder(photos[sha].label) / f"{sha}.{_EXTENSIONS.get(kind, kind)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        paths[sha] = path
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "corrections.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for sha, fix in sorted(photos.items()):
            decided = datetime.fromtimestamp(fix.decided_at_ms / 1000, UTC)
            found = paths.get(sha)
            writer.writerow(
                [
                    sha,
                    fix.label,
                    fix.category,
                    fix.reviewer,
                    fix.correction_id,
                    decided.isoformat().replace("+00:00", "Z"),
                    "" if found is None else str(found.relative_to(out)),
                ]
            )
    return ExportResult(len(photos), len(paths), csv_path)


def _read_whole(settings: Settings, topic: str, timeout_s: float) -> list[tuple[Any, Any]]:
    """Every record of ``topic`` up to its end offsets now, as (key, value)."""
    consumer = make_consumer(settings)
    try:
        ends = end_offsets(consumer, topic)
        if not ends:
            return []
        starts = consumer.beginning_offsets(list(ends))

        def done(_records: list[Any]) -> bool:
            return all(consumer.position(tp) >= end for tp, end in ends.items())

        records = read_from(consumer, dict(starts), done=done, timeout_s=timeout_s)
        return [
            (r.key, r.value)
            for r in records
            if r.offset < ends[TopicPartition(r.topic, r.partition)]
        ]
    finally:
        consumer.close()


def run_export(
    settings: Settings, out: Path, *, timeout_s: float, say: Callable[[str], None]
) -> ExportResult:
    """``vitrine corrections export``: read both topics, then write the data set."""
    topics = settings.topics
    corrections = _read_whole(settings, topics.label_corrections, timeout_s)
    say(f"{len(corrections)} records read from {topics.label_corrections}")
    listings = _read_whole(settings, topics.product_images, timeout_s)
    say(f"{len(listings)} records read from {topics.product_images}")
    return export_corrections(
        corrections, listings, out, max_image_bytes=settings.images.max_image_bytes
    )
