"""The worker stands apart from the tools: it never imports them, and loading it loads none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import streams

PACKAGE = Path(streams.__file__).resolve().parent
TOOLS = ("streams.tools",)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add("<relative>")
    return names


def test_the_worker_never_imports_the_tools() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            n for n in _imports(path) if n.startswith(TOOLS) or n == "<relative>"
        )
        for path in (PACKAGE / "worker").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_settings_import_neither_worker_nor_tools() -> None:
    names = _imports(PACKAGE / "settings.py")
    assert not [n for n in names if n.startswith(("streams.worker", *TOOLS))]


def test_loading_the_worker_app_loads_no_tool() -> None:
    code = (
        "import sys, streams.worker.app, streams.worker.web;"
        "app = streams.worker.app.create_app();"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('streams.tools'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_every_streams_module_is_in_worker_or_tools() -> None:
    loose = sorted(
        p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "settings.py")
    )
    assert loose == []
    assert not [p for p in PACKAGE.iterdir() if p.is_dir() and p.name not in
                ("worker", "console", "tools", "__pycache__")]  # fmt: skip


def test_the_console_never_imports_the_tools_and_the_worker_never_the_console() -> None:
    """The console runs in production beside the worker: it may use the worker's clients."""
    console = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.startswith(TOOLS))
        for path in (PACKAGE / "console").rglob("*.py")
    }
    assert {k: v for k, v in console.items() if v} == {}
    worker = {
        str(path.relative_to(PACKAGE)): sorted(
            n for n in _imports(path) if n.startswith("streams.console")
        )
        for path in (PACKAGE / "worker").rglob("*.py")
    }
    assert {k: v for k, v in worker.items() if v} == {}


def test_no_function_over_80_lines() -> None:
    """Long functions hide what they do; split them, or say in a comment why one must be long."""
    root = PACKAGE.parent
    long = []
    for pkg in ("streams", "inference", "schemas"):
        for path in (root / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            lines = path.read_text(encoding="utf-8").splitlines()
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if node.end_lineno is None or node.end_lineno - node.lineno < 80:
                    continue
                body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if "must be long" not in body:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert long == []
