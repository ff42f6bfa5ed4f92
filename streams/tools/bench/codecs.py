"""``vitrine bench codecs``: what each Kafka codec costs on the worker's own outputs.

The worker's producer compresses its record batches with
``VITRINE_KAFKA_COMPRESSION_TYPE``. This measures every codec on batches of the
records it really writes (``ProductLabelled`` and ``EnrichedOrder``, with
varied ids, labels, scores and image hashes, so nothing compresses better than
in production), through aiokafka's own record-batch builder and reader: bytes
on the wire per record, and CPU per record to build a batch (the worker) and to
read it back (every consumer). Every codec is measured side by side with
``none`` in one run and reported as ratios to it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from schemas import codec
from schemas.records import (
    SCHEMA_VERSION,
    EnrichedItem,
    EnrichedOrder,
    Label,
    ProductLabelled,
    Timings,
)

__all__ = ["CODECS", "CodecResult", "bench_codecs_command", "run_bench"]

# aiokafka's codec ids (the record batch attribute's low bits).
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_LABELS = ("banana", "oat milk", "Granny Smith", "avocado", "orange juice", "yoghurt", "leek")
_CATEGORIES = ("produce", "dairy", "juice", "bakery", "other")


@dataclass(frozen=True)
class CodecResult:
    """One codec on one record type."""

    record: str
    codec: str
    bytes_per_record: float
    build_us_per_record: float
    read_us_per_record: float
    size_vs_none: float
    build_cpu_vs_none: float


def _labelled(rng: random.Random, now: datetime) -> bytes:
    scores = sorted((rng.random() for _ in range(5)), reverse=True)
    return codec.encode(
        ProductLabelled(
            schema_version=SCHEMA_VERSION,
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            occurred_at=now,
            product_id=f"sku-{rng.randrange(10**6):06d}",
            labels=tuple(Label(label=rng.choice(_LABELS), score=round(s, 4)) for s in scores),
            category=rng.choice(_CATEGORIES),
            category_score=round(scores[0], 4),
            model_name="grocery-store",
            model_version="1.0.0",
            image_sha256=f"{rng.getrandbits(256):064x}",
            cached=rng.random() < 0.3,
            flags=(),
            timings=Timings(
                decode_ms=round(rng.uniform(0.5, 4), 2),
                inference_ms=round(rng.uniform(3, 12), 2),
                end_to_end_ms=round(rng.uniform(20, 200), 2),
            ),
            labelled_at=now + timedelta(milliseconds=rng.randrange(500)),
        )
    )


def _enriched(rng: random.Random, now: datetime) -> bytes:
    items = []
    for _ in range(rng.randint(1, 4)):
        qty, price = rng.randint(1, 5), round(rng.uniform(0.5, 30), 2)
        items.append(
            EnrichedItem(
                product_id=f"sku-{rng.randrange(10**6):06d}",
                quantity=qty,
                unit_price=price,
                line_total=round(qty * price, 2),
                category=rng.choice(_CATEGORIES),
                category_score=round(rng.random(), 4),
                model_version="1.0.0",
                category_status="labelled",
                unknown_reason=None,
            )
        )
    return codec.encode(
        EnrichedOrder(
            schema_version=SCHEMA_VERSION,
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            occurred_at=now,
            order_id=f"ord-{rng.randrange(10**9):09d}",
            customer_id=f"cust-{rng.randrange(10**5)}",
            region=rng.choice(("eu-north", "eu-south", "us-east", "ap-south")),
            currency="EUR",
            created_at=now,
            items=tuple(items),
            order_total=round(sum(i.line_total for i in items), 2),
            enriched_at=now,
        )
    )


def _build(values: list[bytes], codec_id: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec_id, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 24,
    )  # fmt: skip
    ts = int(time.time() * 1000)
    for i, value in enumerate(values):
        builder.append(i, timestamp=ts, key=value[:12], value=value, headers=[])
    return bytes(builder.build())


def _read(batch: bytes) -> int:
    return sum(1 for _ in DefaultRecordBatch(batch))


def _time_per_record(fn: Any, arg: Any, n_records: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*arg)
        best = min(best, time.perf_counter() - t)
    return best / n_records * 1e6


def run_bench(*, batch_records: int = 500, repeats: int = 7, seed: int = 0) -> list[CodecResult]:
    """Every codec on a batch of ``batch_records`` labels and one of enriched orders."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out: list[CodecResult] = []
    for name, make in (("ProductLabelled", _labelled), ("EnrichedOrder", _enriched)):
        values = [make(rng, now) for _ in range(batch_records)]
        rows = {}
        for codec_name, codec_id in CODECS.items():
            batch = _build(values, codec_id)
            assert _read(batch) == batch_records
            rows[codec_name] = (
                len(batch) / batch_records,
                _time_per_record(_build, (values, codec_id), batch_records, repeats),
                _time_per_record(_read, (batch,), batch_records, repeats),
            )
        size0, build0, _ = rows["none"]
        for codec_name, (size, build_us, read_us) in rows.items():
            result = CodecResult(
                name, codec_name, round(size, 1), round(build_us, 2), round(read_us, 2),
                round(size / size0, 3), round(build_us / build0, 2),
            )  # fmt: skip
            out.append(result)
    return out


def bench_codecs_command(*, as_json: bool) -> int:
    """Print the codec table (or JSON); exit status 0."""
    results = run_bench()
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    print(
        f"{'record':16s} {'codec':7s} {'bytes/rec':>9s} {'size/none':>9s} "
        f"{'build us/rec':>12s} {'build/none':>10s} {'read us/rec':>11s}"
    )
    for r in results:
        print(
            f"{r.record:16s} {r.codec:7s} {r.bytes_per_record:9.1f} {r.size_vs_none:9.3f} "
            f"{r.build_us_per_record:12.2f} {r.build_cpu_vs_none:10.2f} "
            f"{r.read_us_per_record:11.2f}"
        )
    return 0
