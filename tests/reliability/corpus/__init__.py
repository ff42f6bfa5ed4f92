"""The bad-input corpus: every case as the (topic, key, value) a producer would send.

``cases.json`` beside this file holds the envelope and transport cases and some
valid ones; :func:`build_corpus` adds the committed corpora of bad events
(``tests/fixtures/bad_events/cases.json``) and bad images
(``tests/fixtures/bad_images/expected.csv``, sent inline) and fills in what only
the running test knows: the HTTP server's port, the file root, the size limits.
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.events import photo_bytes
from tests.unit.schemas.support import bad_cases

__all__ = ["PROCESSED", "Case", "CorpusContext", "build_corpus", "prepare_file_root"]

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.json"
BAD_IMAGES = HERE.parents[1] / "fixtures" / "bad_images"
PROCESSED = "processed"

_LISTING = {
    "schema_version": 1,
    "occurred_at": "2026-11-24T06:04:00Z",
    "title": "corpus listing",
}
_ORDER = {
    "schema_version": 1,
    "occurred_at": "2026-11-24T09:15:02Z",
    "customer_id": "cust-corpus",
    "region": "eu-north",
    "currency": "EUR",
    "items": [
        {"product_id": "corpus-ok_inline_1", "quantity": 2, "unit_price": 3.49},
        {"product_id": "sku-not-labelled", "quantity": 1, "unit_price": 89.9},
    ],
}


@dataclass(frozen=True)
class CorpusContext:
    """What the cases refer to: the image server, the file root and the worker's limits."""

    http_port: int
    file_root: Path
    outside: Path
    max_image_bytes: int
    kafka_max_message_bytes: int


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "corpus", "bad_events" or "bad_images"
    topic: str  # "product-images" or "orders" (the setting, not the test's topic name)
    key: bytes
    value: bytes
    expect: str  # a dead-letter code, or PROCESSED


def prepare_file_root(tmp: Path) -> tuple[Path, Path]:
    """The worker's file root (a photo, an empty file, a directory, a symlink out) and a
    directory beside it."""
    root, outside = tmp / "root", tmp / "outside"
    (root / "subdir").mkdir(parents=True)
    outside.mkdir()
    photo = photo_bytes()[0][1]
    (root / "ok.jpg").write_bytes(photo)
    # A real photo outside: the symlink is refused for where it leads, not for its bytes.
    (outside / "secret.jpg").write_bytes(photo)
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "empty.jpg").write_bytes(b"")
    return root, outside


def _image_b64(token: str, ctx: CorpusContext, event_bytes: int) -> str:
    if token.startswith("@sample:"):
        return base64.b64encode(photo_bytes()[int(token.split(":")[1])][1]).decode()
    if token == "@over_max_image_bytes":
        return base64.b64encode(b"\xff" * (ctx.max_image_bytes + 1)).decode()
    if token == "@near_topic_max":
        # The whole value lands 1 KiB under kafka_max_message_bytes (the broker takes
        # that + 64 KiB of batch overhead): the biggest record the worker may be sent.
        chars = ctx.kafka_max_message_bytes - 1024 - event_bytes
        return "A" * (chars - chars % 4)
    return token


def _fill(value: Any, ctx: CorpusContext) -> Any:
    if isinstance(value, str):
        return (
            value.replace("{port}", str(ctx.http_port))
            .replace("{root}", str(ctx.file_root))
            .replace("{outside}", str(ctx.outside))
        )
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    return value


def _value(case: dict[str, Any], ctx: CorpusContext) -> bytes:
    name = case["name"]
    if "value" in case:
        return str(case["value"]).encode("utf-8")
    if "value_b64" in case:
        return base64.b64decode(case["value_b64"])
    if "order" in case:
        doc = {**_ORDER, "event_id": name, "order_id": f"corpus-{name}"}
        doc["created_at"] = datetime.now(UTC).isoformat()
        doc.update(_fill(case["order"], ctx))
        return json.dumps(doc).encode()
    doc = {**_LISTING, "event_id": name, "product_id": f"corpus-{name}"}
    doc.update(_fill(case["listing"], ctx))
    if isinstance(doc.get("image_b64"), str):
        doc["image_b64"] = _image_b64(doc["image_b64"], ctx, len(json.dumps(doc)))
    return json.dumps(doc).encode()


def _own_cases(ctx: CorpusContext) -> list[Case]:
    document = json.loads(CASES.read_text(encoding="utf-8"))
    return [
        Case(
            name=c["name"],
            source="corpus",
            topic=c["topic"],
            key=f"corpus-{c['name']}".encode(),
            value=_value(c, ctx),
            expect=c["expect"],
        )
        for c in document["cases"]
    ]


def _bad_image_cases(ctx: CorpusContext) -> list[Case]:
    with (BAD_IMAGES / "expected.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        name = "img_" + row["file"].replace(".", "_")
        data = (BAD_IMAGES / row["file"]).read_bytes()
        doc: dict[str, Any] = {**_LISTING, "event_id": name, "product_id": f"corpus-{name}"}
        if data:
            doc["image_b64"] = base64.b64encode(data).decode()
        else:
            # Inline, "" breaks the contract (schema.invalid); a file can be empty.
            doc["image_uri"] = f"file://{ctx.file_root}/{row['file']}"
        out.append(
            Case(
                name=name,
                source="bad_images",
                topic="product-images",
                key=f"corpus-{name}".encode(),
                value=json.dumps(doc).encode(),
                expect=row["code"],
            )
        )
    return out


def build_corpus(ctx: CorpusContext) -> list[Case]:
    """Every case; keys are unique, so a dead letter or an output names its case."""
    events = [
        Case(
            name=b.name,
            source="bad_events",
            topic=b.topic,
            key=b.key.encode(),
            value=b.raw,
            expect=b.expected_code,
        )
        for b in bad_cases()
    ]
    cases = _own_cases(ctx) + _bad_image_cases(ctx) + events
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys)), "corpus keys must be unique"
    return cases
