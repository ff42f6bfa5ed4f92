"""deploy/k8s: probes, grace period, GPU request, KEDA bounds, metrics wiring."""

from __future__ import annotations

import functools
import re

import pytest

from streams.settings import env_fields, settings_from_env

from .yaml_text import (
    K8S,
    block,
    documents,
    kind,
    manifests,
    name,
    scalars,
    vitrine_assignments,
)

DEFAULTS = settings_from_env({})
CONFIG = dict(vitrine_assignments((K8S / "configmap.yaml").read_text()))
# The CPU workers are a StatefulSet (stable pod names: static group instance ids).
DEPLOYMENTS = manifests("Deployment") + manifests("StatefulSet")
WORKERS = [(p, d) for p, d in DEPLOYMENTS if "vitrine-worker" in (name(d) or "")]


def setting(suffix: str) -> str:
    """The ConfigMap's value of ``VITRINE_<SUFFIX>``, or the settings default."""
    var = "VITRINE_" + suffix.upper()
    return CONFIG.get(var, str(functools.reduce(getattr, env_fields()[var], DEFAULTS)))


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+([\w./-]+):\s*(\S+)\s*$", text, re.M))


def _pod_labels(deployment: str) -> dict[str, str]:
    (template,) = block(deployment, "template")
    return _labels(block(template, "labels")[0])


@pytest.fixture(params=WORKERS, ids=lambda pd: name(pd[1]))
def worker(request: pytest.FixtureRequest) -> str:
    return str(request.param[1])


def test_there_are_cpu_and_gpu_workers() -> None:
    assert {name(d) for _, d in WORKERS} == {"vitrine-worker", "vitrine-worker-gpu"}


def test_every_document_is_named_and_namespaced() -> None:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in documents(path):
            k = kind(doc)
            assert k, f"{path.name}: document without kind"
            if k == "Kustomization":
                continue
            assert re.search(r"^apiVersion:\s*\S+", doc, re.M), path.name
            assert name(doc), f"{path.name}: {k} without metadata.name"
            if k != "Namespace":
                assert scalars(block(doc, "metadata")[0], "namespace") == ["vitrine"]


def test_grace_period_exceeds_the_shutdown_timeout(worker: str) -> None:
    (grace,) = scalars(worker, "terminationGracePeriodSeconds")
    assert float(grace) > float(setting("shutdown_timeout_s"))


def test_probes(worker: str) -> None:
    (ready,) = block(worker, "readinessProbe")
    assert scalars(ready, "path") == ["/ready"]
    (live,) = block(worker, "livenessProbe")
    assert scalars(live, "path")[0] in ("/metrics", "/")
    for probe in (ready, live, *block(worker, "startupProbe")):
        assert scalars(probe, "port") == ["web"]
    (ports,) = block(worker, "ports")
    assert scalars(ports, "containerPort") == [setting("web_port")]
    assert scalars(ports, "name") == ["web"]


def test_worker_configuration(worker: str) -> None:
    assert scalars(worker, "args") == ['["worker", "--loglevel", "info"]']
    (env_from,) = block(worker, "envFrom")
    assert "name: vitrine-config" in env_from
    assert re.search(r"secretRef:\s*\n\s+name: vitrine-secrets\s*\n\s+optional: true", env_from)
    (resources,) = block(worker, "resources")
    assert block(resources, "requests")
    assert scalars(block(resources, "limits")[0], "memory")
    assert setting("web_host") == "0.0.0.0"


def test_gpu_worker_takes_one_gpu() -> None:
    (gpu,) = [d for _, d in WORKERS if name(d) == "vitrine-worker-gpu"]
    (limits,) = block(gpu, "limits")
    assert scalars(limits, "nvidia.com/gpu") == ["1"]
    assert scalars(gpu, "replicas")
    env = dict(vitrine_assignments(gpu))
    assert env["VITRINE_EXECUTION_PROVIDERS"].split(",")[0] == "cuda"
    (cpu,) = [d for _, d in WORKERS if name(d) == "vitrine-worker"]
    assert "nvidia.com/gpu" not in cpu


def test_keda_scales_on_the_group_lag_within_the_partitions() -> None:
    scaled = manifests("ScaledObject")
    assert scaled
    deployments = {name(d): kind(d) for _, d in DEPLOYMENTS}
    total_max = 0
    orders_scaled = 0
    for _, doc in scaled:
        (target,) = block(doc, "scaleTargetRef")
        target_name = scalars(target, "name")[0]
        assert target_name in deployments
        # KEDA assumes a Deployment unless told the kind.
        assert (scalars(target, "kind") or ["Deployment"])[0] == deployments[target_name]
        (lo,) = scalars(doc, "minReplicaCount")
        (hi,) = scalars(doc, "maxReplicaCount")
        assert 1 <= int(lo) <= int(hi)
        total_max += int(hi)
        (triggers,) = block(doc, "triggers")
        groups = scalars(triggers, "consumerGroup")
        # Images always; orders (the order agent's own group) where a trigger has it.
        assert groups[0] == setting("app_id")
        assert groups[1:] in ([], [f"{setting('app_id')}-orders"])
        topics = [setting("topic_product_images"), setting("topic_orders")][: len(groups)]
        assert scalars(triggers, "topic") == topics
        n = len(groups)
        assert scalars(triggers, "type") == ["kafka"] * n
        assert scalars(triggers, "bootstrapServers") == [setting("kafka_bootstrap_servers")] * n
        assert scalars(triggers, "offsetResetPolicy") == ["earliest"] * n
        assert all(int(v) > 0 for v in scalars(triggers, "lagThreshold"))
        orders_scaled += len(groups) - 1
    # Both variants may run together in one group: their ceilings add up.
    assert total_max <= int(setting("topic_partitions"))
    assert orders_scaled == 1, "the CPU workers scale on the orders lag too"


def test_every_worker_has_a_disruption_budget() -> None:
    budgets = [_labels(block(doc, "matchLabels")[0]) for _, doc in manifests("PodDisruptionBudget")]
    for _, deployment in WORKERS:
        pod = _pod_labels(deployment)
        assert any(sel.items() <= pod.items() for sel in budgets), name(deployment)


def test_metrics_service_and_service_monitor_select_the_workers() -> None:
    services = [d for _, d in manifests("Service") if name(d) == "vitrine-worker-metrics"]
    (service,) = services
    selector = _labels(block(service, "selector")[0])
    for _, deployment in WORKERS:
        assert selector.items() <= _pod_labels(deployment).items(), name(deployment)
    (ports,) = block(service, "ports")
    assert scalars(ports, "port") == [setting("web_port")]
    assert scalars(ports, "targetPort") == ["web"]
    (monitor,) = [d for _, d in manifests("ServiceMonitor")]
    wanted = _labels(block(monitor, "matchLabels")[0])
    service_labels = _labels(block(block(service, "metadata")[0], "labels")[0])
    assert wanted.items() <= service_labels.items()
    (endpoints,) = block(monitor, "endpoints")
    assert scalars(endpoints, "port") == scalars(ports, "name")
    assert scalars(endpoints, "path") == ["/metrics"]


def test_api_service_routes_to_ready_workers_only() -> None:
    (service,) = [d for _, d in manifests("Service") if name(d) == "vitrine-worker-api"]
    assert scalars(service, "type") == ["ClusterIP"]
    assert not scalars(service, "clusterIP")  # not headless
    assert scalars(service, "publishNotReadyAddresses") in ([], ["false"])  # ready pods only
    selector = _labels(block(service, "selector")[0])
    for _, deployment in WORKERS:
        assert selector.items() <= _pod_labels(deployment).items(), name(deployment)
    (ports,) = block(service, "ports")
    assert scalars(ports, "port") == [setting("web_port")]
    assert scalars(ports, "targetPort") == ["web"]


def test_state_dir_is_the_writable_volume(worker: str) -> None:
    # readOnlyRootFilesystem: the state dir must be a mounted volume.
    env = dict(vitrine_assignments(worker))
    state_dir = env.get("VITRINE_STATE_DIR", setting("state_dir"))
    (mounts,) = block(worker, "volumeMounts")
    assert state_dir in scalars(mounts, "mountPath")


def test_kustomization_lists_existing_files_and_no_secrets() -> None:
    text = (K8S / "kustomization.yaml").read_text()
    (resources,) = block(text, "resources")
    listed = re.findall(r"^\s+-\s+(\S+)", resources, re.M)
    assert listed
    for file in listed:
        assert (K8S / file).is_file(), file
    assert not any("secret" in f for f in listed)
    # Every manifest is either applied by kustomize or documented as optional.
    readme = (K8S / "README.md").read_text()
    for path in K8S.glob("*.yaml"):
        assert path.name in listed or path.name in readme, path.name


def test_cpu_workers_keep_their_names_across_restarts() -> None:
    # The pod name is the worker's static group instance id (VITRINE_WORKER_INSTANCE_ID unset).
    (cpu,) = [d for _, d in WORKERS if name(d) == "vitrine-worker"]
    assert kind(cpu) == "StatefulSet"
    assert scalars(cpu, "serviceName") == ["vitrine-worker-metrics"]
    assert "VITRINE_WORKER_INSTANCE_ID" not in CONFIG
    assert int(setting("kafka_session_timeout_ms")) < 60_000
