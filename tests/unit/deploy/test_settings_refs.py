"""Everything under deploy/ speaks the one settings object's language.

Every ``VITRINE_*`` name is read by :class:`streams.settings.Settings` (one of
its groups' fields), every value set for one parses as that field, and topic
names, the consumer group and partition counts agree with the settings
defaults (the native stack's).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from streams.settings import env_fields, settings_from_env

from .yaml_text import (
    COMPOSE,
    DEPLOY,
    K8S,
    compose_services,
    scalars,
    unquote,
    vitrine_assignments,
)

#: Each variable -> its field's path in the settings (``("kafka", "app_id")``).
FIELDS = env_fields()
_DEFAULT = settings_from_env({})
DEFAULTS: dict[str, Any] = {var: functools.reduce(getattr, path, _DEFAULT) for var, path in FIELDS.items()}
#: The variables that name a topic (``VITRINE_TOPIC_ORDERS``, not ``..._PARTITIONS``).
TOPIC_VARS = {v for v, path in FIELDS.items() if path[0] == "topics" and isinstance(DEFAULTS[v], str)}
_MENTION = re.compile(r"\bVITRINE_[A-Z0-9_]*[A-Z0-9]\b")


def _text_files() -> list[Path]:
    out = []
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        out.append(path)
    return out


def _yaml_files() -> list[Path]:
    return [COMPOSE, *sorted(K8S.glob("*.yaml"))]


def test_deploy_tree_is_scanned() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in _text_files()}
    assert {"docker-compose.yml", "k8s/configmap.yaml", "docker/Dockerfile.cpu"} <= names


def test_every_vitrine_variable_is_a_settings_field() -> None:
    unknown = {
        f"{path.relative_to(DEPLOY)}: {var}"
        for path in _text_files()
        for var in _MENTION.findall(path.read_text())
        if var not in FIELDS
    }
    assert not unknown, f"not read by streams.settings.Settings: {sorted(unknown)}"


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.name)
def test_every_value_set_parses_as_its_setting(path: Path) -> None:
    for var, value in vitrine_assignments(path.read_text()):
        if "${" in value or var not in FIELDS:  # compose interpolation; unknown: other test
            continue
        try:
            settings_from_env({var: value})
        except ValidationError as exc:
            pytest.fail(f"{path.name}: {var}={value!r} is not a valid setting: {exc}")


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.name)
def test_topic_names_and_group_are_the_settings_defaults(path: Path) -> None:
    for var, value in vitrine_assignments(path.read_text()):
        if var in TOPIC_VARS or var == "VITRINE_APP_ID":
            assert value == DEFAULTS[var], f"{path.name}: {var}={value!r}, default {DEFAULTS[var]}"


def test_compose_creates_exactly_the_settings_topics() -> None:
    init = compose_services(COMPOSE.read_text())["kafka-init"]
    looped = re.search(r"for t in ([^;]+);", init)
    assert looped, "kafka-init: expected `for t in <topics>; do`"
    created = set(looped.group(1).split())
    created |= {t for t in re.findall(r"--topic\s+(\S+)", init) if "$" not in t}
    assert created == {DEFAULTS[v] for v in TOPIC_VARS}


def test_compose_partitions_agree() -> None:
    text = COMPOSE.read_text()
    services = compose_services(text)
    configured = {v for k, v in vitrine_assignments(text) if k == "VITRINE_TOPIC_PARTITIONS"}
    assert configured == {str(DEFAULTS["VITRINE_TOPIC_PARTITIONS"])}
    assert set(re.findall(r"--partitions\s+(\d+)", services["kafka-init"])) == configured
    assert set(scalars(services["kafka"], "KAFKA_NUM_PARTITIONS")) == configured


def test_compose_broker_accepts_the_largest_message() -> None:
    kafka = compose_services(COMPOSE.read_text())["kafka"]
    (max_bytes,) = scalars(kafka, "KAFKA_MESSAGE_MAX_BYTES")
    # As the native stack: the record limit plus room for the envelope.
    assert int(max_bytes) >= DEFAULTS["VITRINE_KAFKA_MAX_MESSAGE_BYTES"] + 64 * 1024


def test_secrets_only_in_secrets() -> None:
    secret_fields = {var for var, default in DEFAULTS.items() if isinstance(default, SecretStr)}
    assert secret_fields, "Settings has no SecretStr fields?"
    for path in [COMPOSE, K8S / "configmap.yaml"]:
        leaked = {var for var, _ in vitrine_assignments(path.read_text())} & secret_fields
        assert not leaked, f"{path.name} sets secrets {leaked}; use a Secret"
    example = (K8S / "secret.example.yaml").read_text()
    in_example = {var for var, _ in vitrine_assignments(example)}
    assert in_example <= secret_fields
    assert {"VITRINE_KAFKA_SASL_PASSWORD", "VITRINE_REDIS_PASSWORD"} <= in_example


def test_secret_example_holds_placeholders_only() -> None:
    text = (K8S / "secret.example.yaml").read_text()
    values = []
    for data in re.findall(r"^stringData:\n((?:[ \t]+.*\n?)+)", text, re.M):
        values += [unquote(v) for v in re.findall(r"^\s+[\w.-]+:[ \t]*(.*)$", data, re.M)]
    assert values
    # KEDA's mode keys name a mechanism, not a secret.
    modes = {"plaintext", "scram_sha256", "scram_sha512", "enable", "disable"}
    assert all(v == "change-me" or v in modes for v in values), values
    assert not re.search(r"^data:", text, re.M), "use stringData placeholders, not base64 data"
