"""The settings object: environment prefix, units, secrets that never print."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import Settings


def test_reads_vitrine_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("VITRINE_EXECUTION_PROVIDERS", "CUDA, cpu")
    monkeypatch.setenv("VITRINE_IMAGE_FETCH_ALLOWED_HOSTS", "img.example.com, CDN.example.com")
    s = Settings()
    assert s.max_batch_size == 7
    assert s.providers == ("cuda", "cpu")
    assert s.allowed_hosts == frozenset({"img.example.com", "cdn.example.com"})


def test_is_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.max_batch_size = 3  # type: ignore[misc]


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("VITRINE_REDIS_PASSWORD", "s3cret")
    s = Settings()
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert "s3cret" not in repr(s)
    assert s.kafka_sasl_password.get_secret_value() == "hunter2"


def test_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()


def test_defaults_match_the_local_stack() -> None:
    s = Settings()
    assert s.kafka_bootstrap_servers == f"127.0.0.1:{s.kafka_port}"
    assert s.redis_url == f"redis://127.0.0.1:{s.redis_port}/0"


def test_group_instance_id_is_the_id_and_web_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_WEB_PORT", "6070")
    monkeypatch.setenv("VITRINE_WORKER_INSTANCE_ID", "vitrine-worker-0")
    assert Settings().group_instance_id == "vitrine-worker-0-6070"
    monkeypatch.setenv("VITRINE_WORKER_INSTANCE_ID", "")
    assert Settings().group_instance_id is None
    monkeypatch.delenv("VITRINE_WORKER_INSTANCE_ID")
    monkeypatch.setattr("socket.gethostname", lambda: "pod 7.example")
    assert Settings().group_instance_id == "pod-7.example-6070"


def test_rejects_an_instance_id_kafka_would_refuse_and_a_slow_heartbeat() -> None:
    with pytest.raises(ValidationError, match="worker_instance_id"):
        Settings(worker_instance_id="a worker")
    with pytest.raises(ValidationError, match="VITRINE_KAFKA_HEARTBEAT_INTERVAL_MS"):
        Settings(kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=6000)
