"""The Kubernetes manifests against the images the compose stack built and runs.

Rendered with ``kustomize build`` (or ``kubectl kustomize``), validated with
kubernetes-validate's bundled Kubernetes schemas (offline; ``make
compose-test`` installs it into ``build/compose/pylib``; the CRDs of KEDA and
the Prometheus Operator have no bundled schema and are not validated here),
and compared with the worker image: its user, port, entrypoint and state
directory, and a run under the pods' securityContext (read-only root, no
capabilities, only the pods' emptyDirs writable). The probes' paths are asked
of the running compose worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.compose.test_compose import ENGINE, HOST, WORKER_PORT

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
PYLIB = ROOT / "build" / "compose" / "pylib"
IMAGES = {"vitrine-worker": "vitrine:cpu"}
K8S_VERSION = os.environ.get("STACK_K8S_VERSION", "1.30.0")


def _pylib_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PYLIB)}


def _render(path: Path) -> list[dict[str, Any]]:
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(path)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(path)]
    else:
        pytest.fail("neither kustomize nor kubectl is on PATH: nothing renders deploy/k8s")
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return _load_yaml(text)


_YAML_TO_JSON = (
    "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"
)


def _load_yaml(text: str) -> list[dict[str, Any]]:
    # PyYAML comes with kubernetes-validate in PYLIB; the project does not depend on it.
    out = subprocess.run(
        [sys.executable, "-c", _YAML_TO_JSON],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        env=_pylib_env(),
        timeout=60,
    ).stdout
    docs: list[dict[str, Any]] = json.loads(out)
    return docs


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    docs = _render(ROOT / "deploy" / "k8s")
    docs += _load_yaml((ROOT / "deploy" / "k8s" / "worker-gpu.yaml").read_text())
    return docs


def _inspect(image: str) -> dict[str, Any]:
    out = subprocess.run(
        [ENGINE, "image", "inspect", image],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (info,) = json.loads(out)
    config: dict[str, Any] = info["Config"]
    return config


def _worker(docs: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    (workload,) = [d for d in docs if d["metadata"]["name"] == name and "template" in d["spec"]]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_manifests_validate_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    rendered = _render(ROOT / "deploy" / "k8s")
    assert {d["kind"] for d in rendered} >= {"StatefulSet", "Service", "ConfigMap"}
    files = [ROOT / "deploy" / "k8s" / "worker-gpu.yaml"]
    (tmp_path / "rendered.json").write_text("\n".join(json.dumps(d) for d in rendered))
    for i, doc in enumerate(rendered):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(doc))
        files.append(path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "-k",
            K8S_VERSION,
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        env=_pylib_env(),
        check=False,
        timeout=120,
    )
    report = proc.stdout + proc.stderr
    print(report)
    assert proc.returncode == 0, report
    passed = report.count(" passed for resource ")
    # Everything but the KEDA and Prometheus Operator resources has a schema.
    crds = sum(d["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")) for d in rendered)
    assert passed >= len(rendered) - crds + 2  # + the GPU Deployment and its PDB


@pytest.mark.parametrize("workload", ["vitrine-worker"])
def test_the_worker_image_matches_the_manifest(
    rendered: list[dict[str, Any]], workload: str
) -> None:
    config = _inspect(IMAGES[workload])
    pod, container = _worker(rendered, workload)
    uid, _, gid = config["User"].partition(":")
    assert int(uid) == pod["securityContext"]["runAsUser"]
    assert int(gid) == pod["securityContext"]["runAsGroup"]
    ports = {p["containerPort"] for p in container["ports"]}
    assert {f"{p}/tcp" for p in ports} == set(config["ExposedPorts"])
    assert config["Entrypoint"] == ["vitrine"]
    assert container["args"] == config["Cmd"]
    image_env = dict(e.split("=", 1) for e in config["Env"])
    pod_env = {e["name"]: e["value"] for e in container["env"]}
    assert image_env["VITRINE_STATE_DIR"] == pod_env["VITRINE_STATE_DIR"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert pod_env["VITRINE_STATE_DIR"] in mounts


def test_the_worker_image_runs_under_the_pods_security_context(
    rendered: list[dict[str, Any]],
) -> None:
    pod, container = _worker(rendered, "vitrine-worker")
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmpfs = [arg for m in container["volumeMounts"] for arg in ("--tmpfs", m["mountPath"])]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    sample = "/opt/venv/lib/python3.11/site-packages/inference/samples/Banana_001.jpg"
    proc = subprocess.run(
        [
            ENGINE,
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            user,
            *tmpfs,
            IMAGES["vitrine-worker"],
            "predict",
            sample,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "banana" in proc.stdout.lower(), proc.stdout


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_the_probes_answer_on_the_running_worker(
    rendered: list[dict[str, Any]], probe: str
) -> None:
    _, container = _worker(rendered, "vitrine-worker")
    get = container[probe]["httpGet"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == get["port"]]
    assert port == 6066  # published on the host as WORKER_HOST_PORT
    with urllib.request.urlopen(f"http://{HOST}:{WORKER_PORT}{get['path']}", timeout=5) as resp:
        assert resp.status == 200
