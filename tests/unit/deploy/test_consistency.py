"""The worker images, the compose file and the Kubernetes manifests agree with each other.

Port, user, state directory, health check and command of the worker; the
paths and tools the compose file runs inside the Kafka, Redis and Prometheus
images built here (``deploy/compose/stack.sh``), and the image variables the
script sets. Text only, no containers: the running images are checked by
``tests/compose`` (``make compose-test``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .test_dockerfiles import instructions
from .yaml_text import (
    COMPOSE,
    DEPLOY,
    K8S,
    block,
    compose_services,
    dockerfile_env,
    manifests,
    name,
    scalars,
    vitrine_assignments,
)

DOCKER = DEPLOY / "docker"
SERVICES = compose_services(COMPOSE.read_text())
STACK_SH = (DEPLOY / "compose" / "stack.sh").read_text()
CONFIG = dict(vitrine_assignments((K8S / "configmap.yaml").read_text()))
#: k8s workload name -> (Dockerfile variant, compose service)
WORKERS = {"vitrine-worker": ("cpu", "worker"), "vitrine-worker-gpu": ("cuda", "worker-gpu")}
WORKLOADS = {
    name(doc): doc for _, doc in manifests("StatefulSet") + manifests("Deployment") if name(doc)
}


def _one(path: Path, instr: str) -> str:
    found = [a for i, a in instructions(path) if i == instr]
    assert found, f"{path.name}: no {instr}"
    return found[-1]


def _container(workload: str) -> str:
    (containers,) = block(WORKLOADS[workload], "containers")
    return containers


@pytest.fixture(params=sorted(WORKERS))
def workload(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_one_web_port_everywhere(workload: str) -> None:
    variant, service = WORKERS[workload]
    dockerfile = DOCKER / f"Dockerfile.{variant}"
    port = dockerfile_env(dockerfile.read_text())["VITRINE_WEB_PORT"]
    assert _one(dockerfile, "EXPOSE") == port
    compose_ports = dict(vitrine_assignments(COMPOSE.read_text()))
    assert compose_ports["VITRINE_WEB_PORT"] == port
    assert re.search(rf':{port}"$', "\n".join(block(SERVICES[service], "ports")), re.M)
    assert CONFIG["VITRINE_WEB_PORT"] == port
    assert scalars(_container(workload), "containerPort") == [port]


def test_one_user_everywhere(workload: str) -> None:
    variant, _ = WORKERS[workload]
    uid, _, gid = _one(DOCKER / f"Dockerfile.{variant}", "USER").partition(":")
    doc = WORKLOADS[workload]
    assert scalars(doc, "runAsUser") == [uid]
    assert scalars(doc, "runAsGroup") == [gid]
    assert scalars(doc, "fsGroup") == [gid]


def test_one_state_dir_everywhere(workload: str) -> None:
    variant, _ = WORKERS[workload]
    dockerfile = DOCKER / f"Dockerfile.{variant}"
    state = dockerfile_env(dockerfile.read_text())["VITRINE_STATE_DIR"]
    assert _one(dockerfile, "WORKDIR") == state
    container = _container(workload)
    assert dict(vitrine_assignments(container))["VITRINE_STATE_DIR"] == state
    assert state in scalars(container, "mountPath")


def test_one_health_check_and_command_everywhere(workload: str) -> None:
    variant, service = WORKERS[workload]
    dockerfile = DOCKER / f"Dockerfile.{variant}"
    check = json.loads(_one(dockerfile, "HEALTHCHECK").split(" CMD ", 1)[1])
    anchor = COMPOSE.read_text().split("services:")[0]
    assert f"test: {json.dumps(['CMD', *check])}" in anchor
    assert "healthcheck: *worker-healthcheck" in SERVICES[service]
    # The check asks /ready, which is also the pods' readiness probe.
    healthcheck = Path(__file__).resolve().parents[3] / "streams" / "worker" / "healthcheck.py"
    assert "/ready" in healthcheck.read_text()
    (readiness,) = block(_container(workload), "readinessProbe")
    assert scalars(readiness, "path") == ["/ready"]
    command = json.loads(_one(dockerfile, "CMD"))
    assert scalars(SERVICES[service], "command") == [json.dumps(command)]
    assert scalars(_container(workload), "args") == [json.dumps(command)]


def test_the_images_built_here_are_the_ones_compose_takes() -> None:
    # stack.sh exports KAFKA_IMAGE, REDIS_IMAGE, PROMETHEUS_IMAGE; the compose
    # file reads each as ${NAME:-official image}.
    exported = set(re.findall(r"^\s*export ([A-Z_]+_IMAGE)=", STACK_SH, re.M))
    read = {
        var
        for svc in SERVICES.values()
        for image in scalars(svc, "image")
        for var in re.findall(r"\$\{([A-Z_]+):-", image)
    }
    assert exported == read == {"KAFKA_IMAGE", "REDIS_IMAGE", "PROMETHEUS_IMAGE"}
    for var, dockerfile in [
        ("KAFKA_IMAGE", "kafka"),
        ("REDIS_IMAGE", "redis"),
        ("PROMETHEUS_IMAGE", "prometheus"),
    ]:
        assert re.search(rf'-f deploy/docker/Dockerfile\.{dockerfile} -t "\${var}"', STACK_SH)


def test_the_kafka_image_has_what_the_compose_file_runs() -> None:
    used = set(re.findall(r"/opt/kafka/bin/([\w.-]+\.sh)", COMPOSE.read_text()))
    assert used >= {"kafka-topics.sh", "kafka-broker-api-versions.sh"}
    shipped = {p.name for p in (DOCKER / "kafka" / "bin").iterdir()}
    assert used <= shipped
    kafka = SERVICES["kafka"]
    assert scalars(kafka, "KAFKA_LOG_DIRS") == ["/var/lib/kafka/data"]
    assert "kafka-data:/var/lib/kafka/data" in kafka
    assert "/var/lib/kafka/data" in _one(DOCKER / "Dockerfile.kafka", "RUN")
    # CMD, not ENTRYPOINT: kafka-init's `command` must replace the server.
    assert not [a for i, a in instructions(DOCKER / "Dockerfile.kafka") if i == "ENTRYPOINT"]


@pytest.mark.parametrize(
    ("service", "dockerfile", "tool"),
    [("redis", "redis", "redis-cli"), ("prometheus", "prometheus", "wget")],
)
def test_the_local_images_have_their_health_check_tools(
    service: str, dockerfile: str, tool: str
) -> None:
    (check,) = block(SERVICES[service], "healthcheck")
    assert tool in check
    # redis-cli comes with redis-server (redis-tools); wget is installed outright.
    run = _one(DOCKER / f"Dockerfile.{dockerfile}", "RUN")
    assert {"redis-cli": "redis-server", "wget": "wget"}[tool] in run.split()


def test_local_images_run_as_non_root() -> None:
    for variant in ["kafka", "redis", "prometheus", "cpu", "cuda"]:
        user = _one(DOCKER / f"Dockerfile.{variant}", "USER")
        assert user.split(":")[0] not in {"root", "0"}, f"Dockerfile.{variant}: USER {user}"
