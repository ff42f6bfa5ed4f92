"""kafka-python clients of the tools, built from the settings.

``vitrine demo``, ``vitrine bench`` and ``vitrine report`` publish and read
topics with kafka-python; these helpers build those clients from the settings
(security included, with the worker's SASL keywords) and read a topic from
remembered offsets. On a secured cluster each client is built only after
:func:`~streams.worker.kafka_config.check_kafka_access` passed: kafka-python
reports a wrong password or an untrusted certificate only as a 30 s
"Unable to bootstrap" timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.settings import Settings
from streams.worker.kafka_config import check_kafka_access_sync, sasl_config

__all__ = [
    "client_config",
    "create_topics",
    "end_offsets",
    "make_consumer",
    "make_producer",
    "read_from",
    "security_config",
]


def security_config(settings: Settings) -> dict[str, Any]:
    """kafka-python's security keywords from the settings (no brokers)."""
    conf: dict[str, Any] = {"security_protocol": settings.kafka.security_protocol}
    conf.update(sasl_config(settings))
    if settings.kafka.ssl_cafile:
        conf["ssl_cafile"] = str(settings.kafka.ssl_cafile)
    if settings.kafka.ssl_certfile:
        conf["ssl_certfile"] = str(settings.kafka.ssl_certfile)
    if settings.kafka.ssl_keyfile:
        conf["ssl_keyfile"] = str(settings.kafka.ssl_keyfile)
    return conf


def client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python keywords for the configured brokers, security included."""
    return {"bootstrap_servers": list(settings.kafka.brokers), **security_config(settings)}


def create_topics(settings: Settings, specs: dict[str, int]) -> list[str]:
    """Create the missing topics of ``specs`` (name -> partitions) with the settings' security."""
    from streams.tools.stack import create_topics as create  # noqa: PLC0415

    return create(settings.kafka.bootstrap_servers, specs, security=security_config(settings))


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for all in-sync replicas."""
    check_kafka_access_sync(settings)
    conf = client_config(settings)
    conf.update(
        acks="all",
        linger_ms=5,
        max_request_size=settings.kafka.max_message_bytes + 64 * 1024,
    )
    conf.update(overrides)
    return KafkaProducer(**conf)


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A consumer with no group (offsets are the caller's), reading large records."""
    check_kafka_access_sync(settings)
    conf = client_config(settings)
    conf.update(
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka.max_message_bytes + 64 * 1024,
    )
    conf.update(overrides)
    return KafkaConsumer(**conf)


def end_offsets(consumer: KafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """Current end offset of every partition of ``topic``."""
    deadline = time.monotonic() + 30
    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:
        time.sleep(0.2)
        parts = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
    return dict(consumer.end_offsets(tps)) if tps else {}


def read_from(
    consumer: KafkaConsumer,
    offsets: dict[TopicPartition, int],
    *,
    done: Callable[[list[Any]], bool],
    timeout_s: float,
) -> list[Any]:
    """Read from ``offsets`` until ``done(records)`` is true or the timeout passes."""
    consumer.assign(list(offsets))
    for tp, off in offsets.items():
        consumer.seek(tp, off)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done(out):
        for recs in consumer.poll(timeout_ms=200).values():
            out.extend(recs)
    return out
