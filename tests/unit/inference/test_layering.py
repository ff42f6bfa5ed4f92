"""inference/ stays free of Faust, Kafka and Redis, and of torch at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import inference

PACKAGE = Path(inference.__file__).resolve().parent
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


def test_no_streaming_or_cache_imports() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_top_level_imports(path) & FORBIDDEN)
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_runtime_modules_do_not_import_torch_or_the_export_script() -> None:
    code = (
        "import sys, inference.engine, inference.bench, inference.decode, inference.preprocess;"
        "bad = [m for m in ('torch', 'inference.export', 'faust', 'redis') if m in sys.modules];"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
