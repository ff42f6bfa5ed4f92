"""Kafka clients built from the settings, outside Faust's own.

``vitrine demo``, ``vitrine bench pipeline`` and ``vitrine report`` publish and
read topics with kafka-python; these helpers build those clients from the
settings (security included) and read a topic from remembered offsets.
:func:`aiokafka_config` is the same for the worker's aiokafka batch consumer
(:mod:`streams.batchconsumer`), and :func:`ssl_context` for Faust's credentials.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.settings import Settings

__all__ = [
    "aiokafka_config",
    "end_offsets",
    "make_consumer",
    "make_producer",
    "read_from",
    "ssl_context",
]


def _sasl(settings: Settings) -> dict[str, Any]:
    """SASL mechanism and credentials, the same keywords in kafka-python and aiokafka."""
    if not settings.kafka_security_protocol.startswith("SASL"):
        return {}
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
    }


def _client_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    conf.update(_sasl(settings))
    if settings.kafka_ssl_cafile:
        conf["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        conf["ssl_certfile"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile:
        conf["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
    return conf


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (CA, and a client certificate if set)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: brokers, security, message size."""
    conf: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in settings.kafka_bootstrap_servers.split(",")],
        "client_id": settings.app_id,
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": ssl_context(settings),
        "max_partition_fetch_bytes": settings.kafka_max_message_bytes + 64 * 1024,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }
    conf.update(_sasl(settings))
    return conf


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for all in-sync replicas."""
    conf = _client_config(settings)
    conf.update(
        acks="all",
        linger_ms=5,
        max_request_size=settings.kafka_max_message_bytes + 64 * 1024,
    )
    conf.update(overrides)
    return KafkaProducer(**conf)


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A consumer with no group (offsets are the caller's), reading large records."""
    conf = _client_config(settings)
    conf.update(
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka_max_message_bytes + 64 * 1024,
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
