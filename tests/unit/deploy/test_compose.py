"""deploy/docker-compose.yml: services, health checks, start order, GPU profile."""

from __future__ import annotations

import re

import pytest

from streams.settings import Settings, WebSettings

from .yaml_text import COMPOSE, block, compose_services, scalars, vitrine_assignments

TEXT = COMPOSE.read_text()
SERVICES = compose_services(TEXT)
WORKERS = ["worker", "worker-gpu"]
SHUTDOWN_S = Settings.model_fields["shutdown_timeout_s"].default
WEB_PORT = WebSettings.model_fields["port"].default


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_the_stack_has_its_services() -> None:
    assert {"kafka", "kafka-init", "redis", "worker", "worker-gpu", "prometheus", "grafana"} <= set(
        SERVICES
    )


def _default_image(image: str) -> str:
    """``${KAFKA_IMAGE:-apache/kafka:3.9.1}`` -> the default, ``apache/kafka:3.9.1``."""
    m = re.fullmatch(r"\$\{[A-Z_]+:-(.+)\}", image)
    return m.group(1) if m else image


def test_images_are_pinned() -> None:
    (kafka,) = scalars(SERVICES["kafka"], "image")
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", _default_image(kafka))
    (redis,) = scalars(SERVICES["redis"], "image")
    assert re.fullmatch(r"redis:[78](\.\d+)*(-\w+)?", _default_image(redis))
    for name, svc in SERVICES.items():
        for written in scalars(svc, "image"):
            image = _default_image(written)
            assert ":" in image, f"{name}: {image} is not pinned"
            assert not image.endswith(":latest"), f"{name}: {image}"


def test_kafka_is_one_kraft_node_reachable_in_network_and_from_the_host() -> None:
    kafka = SERVICES["kafka"]
    assert scalars(kafka, "KAFKA_PROCESS_ROLES") == ["broker,controller"]
    (advertised,) = scalars(kafka, "KAFKA_ADVERTISED_LISTENERS")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert "PLAINTEXT_HOST://127.0.0.1:" in advertised
    servers = {v for k, v in vitrine_assignments(TEXT) if k == "VITRINE_KAFKA_BOOTSTRAP_SERVERS"}
    assert servers == {"kafka:9092"}


@pytest.mark.parametrize("name", ["kafka", "redis", "worker", "worker-gpu", "prometheus"])
def test_health_checked(name: str) -> None:
    assert re.search(r"^    healthcheck:", SERVICES[name], re.M), f"{name} has no healthcheck"


def test_depends_on_conditions_are_satisfiable() -> None:
    for name, svc in SERVICES.items():
        for deps in block(svc, "depends_on"):
            for dep, cond in re.findall(r"^      ([\w-]+):\s*\n\s+condition:\s*(\S+)", deps, re.M):
                assert dep in SERVICES, f"{name} depends on unknown {dep}"
                if cond == "service_healthy":
                    assert "healthcheck:" in SERVICES[dep], f"{name} waits for {dep}'s health"


@pytest.mark.parametrize("name", WORKERS)
def test_worker_waits_for_kafka_topics_and_redis(name: str) -> None:
    (deps,) = block(SERVICES[name], "depends_on")
    conditions = dict(re.findall(r"^      ([\w-]+):\s*\n\s+condition:\s*(\S+)", deps, re.M))
    assert conditions == {
        "kafka": "service_healthy",
        "kafka-init": "service_completed_successfully",
        "redis": "service_healthy",
    }


@pytest.mark.parametrize("name", WORKERS)
def test_worker_readiness_and_grace(name: str) -> None:
    svc = SERVICES[name]
    check = '["CMD", "python", "-I", "-m", "streams.worker.healthcheck"]'
    assert check in svc or check in TEXT.split("services:")[0]
    assert "<<: *vitrine-env" in svc
    (grace,) = scalars(svc, "stop_grace_period")
    assert _seconds(grace) > SHUTDOWN_S
    assert re.search(rf':{WEB_PORT}"\s*$', "\n".join(block(svc, "ports")), re.M)
    assert scalars(svc, "command") == ['["worker", "--loglevel", "info"]']


def test_workers_listen_on_all_interfaces() -> None:
    hosts = {v for k, v in vitrine_assignments(TEXT) if k == "VITRINE_WEB_HOST"}
    assert hosts == {"0.0.0.0"}
    shutdown = {v for k, v in vitrine_assignments(TEXT) if k == "VITRINE_SHUTDOWN_TIMEOUT_S"}
    assert all(float(v) < _seconds(g) for v in shutdown for g in scalars(TEXT, "stop_grace_period"))


def test_gpu_worker_is_a_profile_with_one_nvidia_gpu() -> None:
    gpu = SERVICES["worker-gpu"]
    assert scalars(gpu, "profiles") == ['["gpu"]']
    (devices,) = block(gpu, "devices")
    assert scalars(devices, "driver") == ["nvidia"]
    assert scalars(devices, "count") == ["1"]
    assert scalars(devices, "capabilities") == ["[gpu]"]
    assert "profiles:" not in SERVICES["worker"]


def test_bind_mounts_exist() -> None:
    for name, svc in SERVICES.items():
        for source in re.findall(r"^\s+-\s+(\./[^:]+):", svc, re.M):
            assert (COMPOSE.parent / source).exists(), f"{name}: {source}"


def test_prometheus_and_grafana_read_the_provisioned_files() -> None:
    prom = SERVICES["prometheus"]
    assert "./prometheus:/etc/prometheus" in prom
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom
    graf = SERVICES["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning" in graf
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in graf
