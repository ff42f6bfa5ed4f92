"""inference/ stays free of Faust, Kafka and Redis; serving never reaches into training."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import inference

PACKAGE = Path(inference.__file__).resolve().parent
SERVING = PACKAGE / "serving"
FORBIDDEN = {"faust", "kafka", "aiokafka", "redis", "mode", "streams"}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module a file of ``package`` imports, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            # ``from inference import training`` names the subpackage as an alias.
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_no_streaming_or_cache_imports() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_top_level_imports(path) & FORBIDDEN)
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_serving_never_imports_training() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m
            for m in _imported_modules(path.read_text(encoding="utf-8"), _package_of(path))
            if m == "inference.training" or m.startswith("inference.training.")
        )
        for path in SERVING.rglob("*.py")
    }
    assert len(offenders) >= 7  # the walk did find the serving modules
    assert {k: v for k, v in offenders.items() if v} == {}


def test_relative_and_aliased_imports_are_resolved() -> None:
    """The walk above catches the spellings a serving module could use."""
    source = "from ..training import trainer\nfrom .. import training\nfrom . import decode\n"
    found = _imported_modules(source, "inference.serving")
    assert {"inference.training.trainer", "inference.training", "inference.serving.decode"} <= found
    assert _package_of(SERVING / "engine.py") == "inference.serving"
    assert _package_of(SERVING / "__init__.py") == "inference.serving"


def test_serving_modules_load_no_training_torch_or_streaming_code() -> None:
    code = (
        "import sys, json\n"
        "import inference.serving.engine, inference.serving.decode\n"
        "import inference.serving.preprocess, inference.serving.bench\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    bad = [
        m
        for m in loaded
        if m == "inference.training"
        or m.startswith("inference.training.")
        or m.split(".")[0] in {"torch", *FORBIDDEN}
    ]
    assert bad == []
    assert "inference.serving.engine" in loaded


def _inference_imports(module: str) -> set[str]:
    path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
    found = _imported_modules(path.read_text(encoding="utf-8"), _package_of(path))
    return {m for m in found if m.startswith("inference.")}


def test_training_dependencies_point_one_way() -> None:
    """Trainer and evaluation share metrics and dataset loading; neither imports the other."""
    assert not any(
        m.startswith("inference.training.evaluate")
        for m in _inference_imports("inference.training.trainer")
    )
    assert not any(
        m.startswith("inference.training.trainer")
        for m in _inference_imports("inference.training.evaluate")
    )
    assert _inference_imports("inference.training.metrics") == set()
    assert "inference.training.metrics" in _inference_imports("inference.training.trainer")
    assert "inference.training.dataset" in _inference_imports("inference.training.evaluate")
