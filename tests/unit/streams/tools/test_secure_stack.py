"""The secured stack's pure parts: certificate commands, secrets, ACL, properties, messages."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.settings import KafkaSettings, Settings, settings_from_env
from streams.tools.certs import SERVER_SAN, StackCerts, openssl_commands, read_or_create_secret
from streams.tools.stack import SECURE_USER, Stack, StackSettings, redis_acl
from streams.worker.cache import LabelCache, _refused
from streams.worker.kafka_config import sasl_refused_message, tls_refused_message


def test_a_secret_is_random_0600_and_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "kafka.password"
    first = read_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path).get_secret_value() == first.get_secret_value()
    assert len(first.get_secret_value()) >= 32
    assert read_or_create_secret(tmp_path / "other").get_secret_value() != first.get_secret_value()
    assert first.get_secret_value() not in repr(first)


def test_openssl_commands_never_carry_the_keystore_password(tmp_path: Path) -> None:
    certs = StackCerts(tmp_path)
    secret = read_or_create_secret(certs.keystore_password_file).get_secret_value()
    commands = openssl_commands(certs)
    assert [c[0] for c in commands] == ["genrsa", "req", "genrsa", "req", "x509", "pkcs12"]
    assert all(secret not in arg for cmd in commands for arg in cmd)
    assert commands[-1][-1] == f"file:{certs.keystore_password_file}"
    assert "IP:127.0.0.1" in SERVER_SAN
    assert "DNS:localhost" in SERVER_SAN


def test_the_redis_acl_turns_the_default_user_off() -> None:
    acl = redis_acl("vitrine", SecretStr("pw"))
    assert acl.splitlines() == [
        "user default off",
        "user vitrine on >pw ~vitrine* resetchannels +@all",
    ]


def _stack(tmp_path: Path) -> Stack:
    local = StackSettings(kafka_sasl_ssl_port=19095, redis_tls_port=16390)
    return Stack(Settings(state_dir=tmp_path), name="s", local=local, secure=True)


def test_the_broker_gets_a_sasl_ssl_listener_beside_the_plaintext_one(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    props = stack._sasl_ssl_props()
    assert "SASL_SSL://127.0.0.1:19095" in props["listeners"]
    assert "PLAINTEXT://127.0.0.1:9092" in props["listeners"]
    assert props["listener.security.protocol.map"].count("PLAINTEXT") == 3
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.keystore.location"] == str(stack.certs.keystore)
    conf = stack._write_kafka_config()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_a_client_of_the_secure_stack_gets_every_setting_it_needs(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    env = stack.secure_client_env()
    assert env["VITRINE_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19095"
    assert env["VITRINE_REDIS_URL"] == f"rediss://{SECURE_USER}@127.0.0.1:16390/0"
    settings = settings_from_env(env)
    assert settings.kafka.sasl_password.get_secret_value() == env["VITRINE_KAFKA_SASL_PASSWORD"]
    assert settings.redis.ssl_cafile == stack.ca_file
    # What `vitrine stack up --secure` prints reads the passwords from their files.
    shell = stack.secure_client_shell()
    assert env["VITRINE_KAFKA_SASL_PASSWORD"] not in shell
    assert env["VITRINE_REDIS_PASSWORD"] not in shell
    assert "secrets/kafka.password" in shell
    for text in (repr(settings), str(settings)):
        assert env["VITRINE_KAFKA_SASL_PASSWORD"] not in text
        assert env["VITRINE_REDIS_PASSWORD"] not in text


def test_refusal_messages_name_the_settings_and_never_the_password() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="vitrine",
        sasl_password=SecretStr("hunter2-secret"),
        ssl_cafile=Path("/etc/ca.pem"),
    )
    s = Settings(kafka=kafka)
    sasl = sasl_refused_message("b:9095", s)
    assert "VITRINE_KAFKA_SASL_PASSWORD" in sasl
    assert "'vitrine'" in sasl
    assert "hunter2-secret" not in sasl
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"
    tls = tls_refused_message("b:9095", s, exc)
    assert "self-signed certificate in certificate chain" in tls
    assert "kafka_ssl_cafile=/etc/ca.pem (VITRINE_KAFKA_SSL_CAFILE)" in tls


@pytest.mark.parametrize(
    ("exc", "refused"),
    [
        (AuthenticationError("invalid username-password pair"), True),
        (ResponseError("WRONGPASS invalid username-password pair or user is disabled."), True),
        (ResponseError("NOPERM this user has no permissions to access one of the keys"), True),
        (ResponseError("NOAUTH Authentication required."), True),
        (RedisConnectionError("Connection refused"), False),
        (ResponseError("WRONGTYPE Operation against a key"), False),
    ],
)
def test_credential_refusals_are_told_apart_from_outages(exc: Exception, refused: bool) -> None:
    assert _refused(exc) is refused


def test_a_ca_file_applies_to_tls_urls_only() -> None:
    async def kwargs(url: str) -> dict[str, object]:
        cache = LabelCache(url, ttl_s=1, timeout_ms=10, ssl_cafile="/ca.pem")
        try:
            return dict(cache._redis.connection_pool.connection_kwargs)
        finally:
            await cache.close()

    assert asyncio.run(kwargs("rediss://u@127.0.0.1:1/0"))["ssl_ca_certs"] == "/ca.pem"
    assert "ssl_ca_certs" not in asyncio.run(kwargs("redis://127.0.0.1:1/0"))
