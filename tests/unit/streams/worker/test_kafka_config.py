"""Client settings for aiokafka (the order consumer) and kafka-python from VITRINE_* settings."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from streams.settings import KafkaSettings, Settings
from streams.worker.kafka_config import aiokafka_config, ssl_context

# The system CA bundle (Debian's ca-certificates) as the cluster's CA file.
CA = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def test_plaintext_has_no_tls_and_no_sasl() -> None:
    conf = aiokafka_config(
        Settings(kafka=KafkaSettings(bootstrap_servers="a:9092, b:9092", app_id="shop"))
    )
    assert conf["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert conf["client_id"] == "shop"
    assert conf["security_protocol"] == "PLAINTEXT"
    assert conf["ssl_context"] is None
    assert "sasl_mechanism" not in conf


def test_sasl_ssl_carries_mechanism_credentials_and_a_verifying_context() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="vitrine",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=CA,
    )
    s = Settings(kafka=kafka)
    conf = aiokafka_config(s)
    assert conf["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl_plain_username"], conf["sasl_plain_password"]) == ("vitrine", "s3cret")
    context = conf["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname

    async def build() -> None:
        # aiokafka validates the combination when the client is constructed.
        consumer = AIOKafkaConsumer("orders", group_id="g", **conf)
        await consumer.stop()

    asyncio.run(build())


def test_sasl_plaintext_has_no_tls() -> None:
    s = Settings(kafka=KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u"))
    assert ssl_context(s) is None
    assert aiokafka_config(s)["sasl_plain_username"] == "u"


def test_a_missing_ca_file_fails_at_start_not_at_first_fetch(tmp_path: Path) -> None:
    s = Settings(kafka=KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        aiokafka_config(s)


def test_both_consumers_bound_how_long_the_broker_may_hold_an_empty_fetch() -> None:
    """Faust hard-codes 1,500 ms; the worker's Faust consumer gets the setting instead.

    aiokafka keeps one fetch in flight per broker, so a held fetch for idle
    partitions delays the busy ones (1.3-1.5 s stalls in ``bench pipeline``).
    """
    from streams.worker.app import create_app

    settings = Settings(kafka=KafkaSettings(fetch_max_wait_ms=77))
    assert aiokafka_config(settings)["fetch_max_wait_ms"] == 77

    async def faust_consumer_wait() -> int:
        app = create_app(settings)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            # What aiokafka hands its Fetcher when the consumer starts.
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()
            thread.thread_loop.close()  # never started: nothing else closes it

    assert asyncio.run(faust_consumer_wait()) == 77
