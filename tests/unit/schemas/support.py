"""Paths and loaders shared by the schema tests."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

import schemas
from schemas.records import RECORD_TYPES

ROOT = Path(schemas.__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
BAD_EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "bad_events" / "cases.json"
TYPES_BY_NAME: dict[str, type[msgspec.Struct]] = {t.__name__: t for t in RECORD_TYPES}


def example_type(path: Path) -> type[msgspec.Struct]:
    """``OrderEvent.v1.json`` and ``ProductImageEvent-uri.v1.json`` name their type."""
    return TYPES_BY_NAME[path.name.split(".")[0].split("-")[0]]


def example_paths() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.v1.json"))


def load_example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES_DIR / name).read_text(encoding="utf-8"))
    return loaded


@dataclass(frozen=True)
class BadCase:
    name: str
    topic: str
    key: str
    raw: bytes
    expected_code: str
    expected_path: str | None


def bad_cases() -> list[BadCase]:
    document = json.loads(BAD_EVENTS.read_text(encoding="utf-8"))
    cases = []
    for case in document["cases"]:
        value = case["value"]
        raw = (
            base64.b64decode(value, validate=True)
            if case["value_encoding"] == "base64"
            else value.encode("utf-8")
        )
        cases.append(
            BadCase(
                name=case["name"],
                topic=case["topic"],
                key=case["key"],
                raw=raw,
                expected_code=case["expected_code"],
                expected_path=case.get("expected_path"),
            )
        )
    return cases
