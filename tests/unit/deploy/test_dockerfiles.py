"""The CPU and CUDA Dockerfiles: multi-stage, non-root, the `vitrine` console script."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from inference.serving.providers import PROVIDERS
from streams.settings import WebSettings, settings_from_env

from .yaml_text import COMPOSE, DEPLOY, ROOT, compose_services, scalars

DOCKER = DEPLOY / "docker"
VARIANTS = ["cpu", "cuda"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in instructions(path):
        if instr == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def _one(path: Path, instr: str) -> str:
    found = [a for i, a in instructions(path) if i == instr]
    assert found, f"{path.name}: no {instr}"
    return found[-1]  # the last one is the one in force


@pytest.fixture(params=VARIANTS)
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return DOCKER / f"Dockerfile.{request.param}"


def test_entrypoint_is_the_declared_console_script(dockerfile: Path) -> None:
    assert json.loads(_one(dockerfile, "ENTRYPOINT")) == ["vitrine"]
    assert "vitrine" in PYPROJECT["project"]["scripts"]


def test_cmd_starts_the_worker(dockerfile: Path) -> None:
    assert json.loads(_one(dockerfile, "CMD")) == ["worker", "--loglevel", "info"]


def test_on_python_slim_and_no_source_tree_in_the_image(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    froms = [a for i, a in steps if i == "FROM"]
    args = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for i, a in steps if i == "ARG")))
    for base in froms:
        image = base.split()[0]
        image = args.get(image.strip("${}"), image) if image.startswith("$") else image
        assert image == "python:3.11-slim", f"{dockerfile.name}: FROM {image}"
    # The final stage takes the virtual environment from a build stage, or
    # installs from a bind mount of the context: the source is in no layer.
    last = max(n for n, (i, _) in enumerate(steps) if i == "FROM")
    copies = [a for i, a in steps[last:] if i == "COPY"]
    assert all("--from=build" in a for a in copies), copies
    if len(froms) == 1:
        assert any(i == "RUN" and "--mount=type=bind,target=/src" in a for i, a in steps)


def test_installs_the_project_from_the_repository(dockerfile: Path) -> None:
    runs = " ".join(a for i, a in instructions(dockerfile) if i == "RUN")
    assert re.search(r"pip install (?:--no-deps )?(?:\.|/src|\"\.\[gpu\]\")(?:\s|$)", runs)


def test_runs_as_a_non_root_user(dockerfile: Path) -> None:
    user = _one(dockerfile, "USER").split(":")[0]
    assert user not in ("root", "0")


def test_serves_metrics_on_all_interfaces(dockerfile: Path) -> None:
    env = _env(dockerfile)
    assert env["VITRINE_WEB_HOST"] == "0.0.0.0"
    port = WebSettings.model_fields["port"].default
    assert env["VITRINE_WEB_PORT"] == str(port)
    assert _one(dockerfile, "EXPOSE").split() == [str(port)]


def test_no_torch(dockerfile: Path) -> None:
    for instr, args in instructions(dockerfile):
        assert not re.search(r"\btorch\b", args), f"{instr} {args}"


def test_execution_providers_are_known(dockerfile: Path) -> None:
    env = {"VITRINE_EXECUTION_PROVIDERS": _env(dockerfile)["VITRINE_EXECUTION_PROVIDERS"]}
    providers = settings_from_env(env).model.providers
    assert providers
    assert set(providers) <= set(PROVIDERS)


def test_cuda_image_installs_the_gpu_extra() -> None:
    path = DOCKER / "Dockerfile.cuda"
    assert "gpu" in PYPROJECT["project"]["optional-dependencies"]
    runs = " ".join(a for i, a in instructions(path) if i == "RUN")
    assert "['optional-dependencies']['gpu']" in runs
    assert _env(path)["VITRINE_EXECUTION_PROVIDERS"].split(",")[0] == "cuda"
    assert _env(DOCKER / "Dockerfile.cpu")["VITRINE_EXECUTION_PROVIDERS"] == "cpu"


def test_dockerignore_is_an_allow_list_of_the_packages(dockerfile: Path) -> None:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then allow what the build needs"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert {"pyproject.toml", *packages} <= allowed
    assert not {".venv", ".env", "tests"} & allowed


@pytest.mark.parametrize(("service", "variant"), [("worker", "cpu"), ("worker-gpu", "cuda")])
def test_compose_builds_the_dockerfiles(service: str, variant: str) -> None:
    svc = compose_services(COMPOSE.read_text())[service]
    (context,) = scalars(svc, "context")
    (file,) = scalars(svc, "dockerfile")
    assert (COMPOSE.parent / context).resolve() == ROOT
    assert (ROOT / file) == DOCKER / f"Dockerfile.{variant}"
