"""The JSON Schema (draft 2020-12) files in ``schemas/json/``, generated from the records.

The committed files are the contract other languages read; the records in
:mod:`schemas.records` must match them exactly, which the unit tests check. After
changing a record, regenerate and review the diff::

    .venv/bin/python -m schemas.json_schema --write   # or --check (exit 1 if stale)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas.records import RECORD_TYPES

__all__ = ["JSON_DIR", "json_schema", "load_json_schema", "render", "schema_path"]

JSON_DIR: Final = Path(__file__).resolve().parent / "json"
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# What a msgspec type cannot say; the records enforce the same in __post_init__.
_EXTRA: Final[dict[str, dict[str, Any]]] = {
    "ProductImageEvent": {
        "oneOf": [
            {"required": ["image_b64"], "properties": {"image_b64": {"type": "string"}}},
            {"required": ["image_uri"], "properties": {"image_uri": {"type": "string"}}},
        ]
    },
    "LabelCorrection": {
        "oneOf": [
            {
                "required": ["category"],
                "properties": {
                    "decision": {"enum": ["accept", "relabel"]},
                    "category": {"type": "string"},
                    "duplicate_of": {"type": "null"},
                },
            },
            {
                "properties": {
                    "decision": {"const": "not_a_product"},
                    "category": {"type": "null"},
                    "duplicate_of": {"type": "null"},
                },
            },
            {
                "required": ["duplicate_of"],
                "properties": {
                    "decision": {"enum": ["duplicate_confirmed", "duplicate_dismissed"]},
                    "category": {"type": "null"},
                    "duplicate_of": {"type": "string"},
                },
            },
        ]
    },
}


def schema_path(record_type: type[msgspec.Struct]) -> Path:
    """Return the path of the committed schema file of ``record_type``."""
    return JSON_DIR / f"{record_type.__name__}.schema.json"


def _tidy(node: Any) -> Any:
    # Docstrings become descriptions: fold their line breaks and indentation.
    if isinstance(node, dict):
        return {
            key: " ".join(value.split()) if key == "description" else _tidy(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_tidy(value) for value in node]
    return node


def json_schema(record_type: type[msgspec.Struct]) -> dict[str, Any]:
    """Return the JSON Schema document of ``record_type``, as committed in ``schemas/json/``."""
    name = record_type.__name__
    generated = _tidy(msgspec.json.schema(record_type))
    defs: dict[str, Any] = generated["$defs"]
    document: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"urn:vitrine:schema:{name}:v1",
        **defs.pop(name),
        **_EXTRA.get(name, {}),
    }
    if defs:
        document["$defs"] = defs
    return document


def render(document: dict[str, Any]) -> str:
    """Return ``document`` as the committed files write it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_json_schema(record_type: type[msgspec.Struct]) -> dict[str, Any]:
    """Return the committed JSON Schema of ``record_type``."""
    loaded: dict[str, Any] = json.loads(schema_path(record_type).read_text(encoding="utf-8"))
    return loaded


def main(argv: list[str] | None = None) -> int:
    """Write or check the schema files; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.json_schema", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate schemas/json/")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for record_type in RECORD_TYPES:
        path = schema_path(record_type)
        text = render(json_schema(record_type))
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(path)
    for path in stale:
        print(f"stale: {path} (run python -m schemas.json_schema --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
