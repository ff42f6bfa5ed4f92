"""The settings object: its groups, environment names, units, secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import KafkaSettings, Settings, env_fields, settings_from_env
from streams.tools.stack import StackSettings


def test_reads_vitrine_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("VITRINE_EXECUTION_PROVIDERS", "CUDA, cpu")
    monkeypatch.setenv("VITRINE_IMAGE_FETCH_ALLOWED_HOSTS", "img.example.com, CDN.example.com")
    s = Settings()
    assert s.model.max_batch_size == 7
    assert s.model.providers == ("cuda", "cpu")
    assert s.images.allowed_hosts == frozenset({"img.example.com", "cdn.example.com"})


def test_each_group_reads_the_variables_it_always_had(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "VITRINE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
        "VITRINE_APP_ID": "shop",
        "VITRINE_TOPIC_ORDERS": "orders-x",
        "VITRINE_REDIS_URL": "redis://r:1/0",
        "VITRINE_MAX_IMAGE_BYTES": "99",
        "VITRINE_ORDER_HOLD_MAX_MS": "5",
        "VITRINE_SALES_WINDOW_S": "60",
        "VITRINE_RECOMMEND_MAX_MEMBERS": "10",
        "VITRINE_WEB_PORT": "7000",
        "VITRINE_STATE_DIR": "/tmp/v",
    }
    for var, value in values.items():
        monkeypatch.setenv(var, value)
    for s in (Settings(), settings_from_env(values)):
        assert (s.kafka.bootstrap_servers, s.kafka.app_id) == ("h:1", "shop")
        assert s.kafka.order_consumer_group == "shop-orders"
        assert (s.topics.orders, s.redis.url) == ("orders-x", "redis://r:1/0")
        assert (s.images.max_image_bytes, s.orders.hold_max_ms, s.orders.sales_window_s) == (
            99,
            5,
            60,
        )
        assert (s.recommend.max_members, s.web.port, s.state_dir) == (10, 7000, Path("/tmp/v"))


def test_a_dotenv_file_sets_every_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("VITRINE_KAFKA_BOOTSTRAP_SERVERS=f:1\nVITRINE_APP_ID=dot\n")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert (s.kafka.bootstrap_servers, s.kafka.app_id) == ("f:1", "dot")


def test_every_variable_is_read_once_and_none_is_the_local_stacks() -> None:
    names = env_fields()
    assert names["VITRINE_KAFKA_BOOTSTRAP_SERVERS"] == ("kafka", "bootstrap_servers")
    assert names["VITRINE_SOUTHERN_HEMISPHERE_REGIONS"] == ("orders", "southern_hemisphere_regions")
    assert names["VITRINE_LOG_LEVEL"] == ("log_level",)
    assert not set(names) & set(env_fields(StackSettings))
    assert "VITRINE_KAFKA_PORT" in env_fields(StackSettings)


def test_is_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.model.max_batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.state_dir = Path("/")  # type: ignore[misc]


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("VITRINE_REDIS_PASSWORD", "s3cret")
    s = Settings()
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert "s3cret" not in repr(s)
    assert s.kafka.sasl_password.get_secret_value() == "hunter2"


def test_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()


def test_defaults_match_the_local_stack() -> None:
    s, local = settings_from_env({}), StackSettings()
    assert s.kafka.bootstrap_servers == f"127.0.0.1:{local.kafka_port}"
    assert s.redis.url == f"redis://127.0.0.1:{local.redis_port}/0"


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
        KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=6000)
