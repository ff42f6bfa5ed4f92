"""schemas/ must work for a consumer with neither Faust nor ONNX Runtime installed."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = [
    "faust",
    "kafka",
    "aiokafka",
    "redis",
    "onnxruntime",
    "cv2",
    "numpy",
    "aiohttp",
    "pydantic",
    "streams",
    "inference",
]


def test_importing_schemas_pulls_in_only_stdlib_and_msgspec() -> None:
    code = (
        "import sys, schemas, schemas.codec, schemas.deadletter, schemas.json_schema, "
        "schemas.sales\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_schemas_work_when_the_heavy_packages_cannot_be_imported() -> None:
    blocker = (
        "import sys\n"
        f"for name in {FORBIDDEN!r}: sys.modules[name] = None\n"
        "from pathlib import Path\n"
        "import schemas\n"
        "raw = Path(schemas.__file__).parent.joinpath('examples/OrderEvent.v1.json').read_bytes()\n"
        "print(schemas.decode_order(raw).order_id)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "ord-20261124-000731"
