"""Text-level reading of the deploy/ YAML files, without a YAML library.

PyYAML is not a dependency of the project, so the tests read the compose file
and the Kubernetes manifests as text: documents split on ``---``, indented
blocks under a key, and ``key: value`` scalars. This relies on the plain,
block-style YAML those files are written in (two-space indentation, one key
per line); a test failing here after a reformat should be fixed here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"

_VITRINE_MAPPING = re.compile(r"^\s*(VITRINE_[A-Z0-9_]+):[ \t]*(.*)$", re.M)
_VITRINE_ENV_LIST = re.compile(r"-\s+name:\s*(VITRINE_[A-Z0-9_]+)\s*\n\s*value:[ \t]*(.*)")
_VITRINE_DOCKER_ENV = re.compile(r"\b(VITRINE_[A-Z0-9_]+)=(\S+)")


def unquote(value: str) -> str:
    """A YAML scalar as written on one line: quotes removed, trailing comment dropped."""
    value = value.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.index(quote, 1)
        return value[1:end]
    return value.split(" #", 1)[0].strip()


def documents(path: Path) -> list[str]:
    """The non-empty YAML documents of ``path``."""
    docs = re.split(r"^---[ \t]*$", path.read_text(), flags=re.M)
    return [d for d in docs if re.search(r"^\w", d, re.M)]


def kind(doc: str) -> str | None:
    """The top-level ``kind`` of a Kubernetes document."""
    m = re.search(r"^kind:\s*(\S+)", doc, re.M)
    return m.group(1) if m else None


def name(doc: str) -> str | None:
    """``metadata.name`` of a Kubernetes document."""
    meta = block(doc, "metadata")
    m = re.search(r"^\s{2}name:\s*(.+)$", meta[0], re.M) if meta else None
    return unquote(m.group(1)) if m else None


def manifests(kind_: str) -> list[tuple[Path, str]]:
    """Every document of that kind under deploy/k8s, with its file."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in documents(path)
        if kind(doc) == kind_
    ]


def block(text: str, key: str) -> list[str]:
    """The indented text under each ``key:`` line (any depth), one string per occurrence."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(rf"^(\s*)(?:-\s+)?{re.escape(key)}:\s*(#.*)?$", line)
        if not m:
            continue
        indent = len(m.group(1)) + (2 if line.lstrip().startswith("- ") else 0)
        body = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt)
        out.append("\n".join(body))
    return out


def scalars(text: str, key: str) -> list[str]:
    """Every value written as ``key: value`` on one line (any depth, list items too)."""
    pattern = rf"^\s*(?:-\s+)?{re.escape(key)}:[ \t]*(\S.*)$"
    return [unquote(v) for v in re.findall(pattern, text, re.M)]


def vitrine_assignments(text: str) -> list[tuple[str, str]]:
    """``(VITRINE_NAME, value)`` pairs set in a YAML mapping (compose environment,
    ConfigMap data, Secret stringData) or a Kubernetes ``env`` list."""
    pairs = [(k, unquote(v)) for k, v in _VITRINE_MAPPING.findall(text)]
    pairs += [(k, unquote(v)) for k, v in _VITRINE_ENV_LIST.findall(text)]
    return pairs


def dockerfile_env(text: str) -> dict[str, str]:
    """``VITRINE_NAME=value`` pairs of a Dockerfile's ``ENV`` instructions."""
    return dict(_VITRINE_DOCKER_ENV.findall(text))


def compose_services(text: str) -> dict[str, str]:
    """Service name -> its block in the compose file."""
    services = block(text, "services")
    assert len(services) == 1, "docker-compose.yml needs exactly one top-level services:"
    out: dict[str, str] = {}
    current = None
    for line in services[0].splitlines():
        m = re.match(r"^  ([A-Za-z0-9._-]+):\s*$", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out
