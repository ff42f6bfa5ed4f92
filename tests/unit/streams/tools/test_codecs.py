"""Both Kafka clients read and write every codec a real producer may use.

Without its compression library, aiokafka (the worker) raises
``UnsupportedCodecError`` from the fetcher on the first compressed batch and
kafka-python (demo, bench, report) refuses to produce or read it.
"""

from __future__ import annotations

import aiokafka.codec
import kafka.codec
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from streams.settings import KafkaSettings, Settings
from streams.tools.bench.codecs import CODECS


@pytest.mark.parametrize("name", ["snappy", "lz4", "zstd"])
def test_both_clients_have_the_codec(name: str) -> None:
    assert getattr(aiokafka.codec, f"has_{name}")(), f"aiokafka cannot read {name}"
    assert getattr(kafka.codec, f"has_{name}")(), f"kafka-python cannot read {name}"


@pytest.mark.parametrize(("name", "codec_id"), list(CODECS.items()))
def test_a_batch_round_trips_through_each_codec(name: str, codec_id: int) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec_id, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    values = [f'{{"event_id": "e-{i}", "category": "produce"}}'.encode() for i in range(100)]
    for i, v in enumerate(values):
        builder.append(i, timestamp=1, key=None, value=v, headers=[])
    batch = DefaultRecordBatch(bytes(builder.build()))
    assert batch.compression_type == codec_id
    assert [r.value for r in batch] == values


def test_the_worker_compresses_with_the_setting() -> None:
    from streams.worker.app import create_app

    assert create_app(Settings()).conf.producer_compression_type == "zstd"
    app = create_app(Settings(kafka=KafkaSettings(compression_type="none")))
    assert app.conf.producer_compression_type is None
