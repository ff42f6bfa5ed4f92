"""A small JSON Schema (2020-12) validator for the keywords vitrine's schema files use.

The ``jsonschema`` package is not a dependency, and the tests must not add one. This
validator covers exactly what ``schemas/json/`` uses and fails loudly on any other
keyword, so a new keyword in a schema file cannot be silently ignored.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

# Keywords that carry no assertion.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$defs"}
_ASSERTIONS = {
    "$ref",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
    "oneOf",
    "allOf",
    "format",
}

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    raise AssertionError(f"unknown JSON Schema type {name!r}")


def _date_time(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def errors(
    instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """Return the violations of ``instance`` against ``schema`` (empty when valid)."""
    root = schema if root is None else root
    unknown = set(schema) - _ANNOTATIONS - _ASSERTIONS
    assert not unknown, f"validator does not implement {sorted(unknown)}"
    found: list[str] = []

    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        found += errors(instance, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            return [*found, f"{path}: expected {types}"]
    if "enum" in schema and instance not in schema["enum"]:
        found.append(f"{path}: not in enum")
    if "const" in schema and instance != schema["const"]:
        found.append(f"{path}: not const")

    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                found.append(f"{path}: missing {name}")
        properties = schema.get("properties", {})
        for name, value in instance.items():
            if name in properties:
                found += errors(value, properties[name], root, f"{path}.{name}")
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                if extra is False:
                    found.append(f"{path}: unexpected {name}")
                elif isinstance(extra, dict):
                    found += errors(value, extra, root, f"{path}[{name!r}]")
        if len(instance) < schema.get("minProperties", 0):
            found.append(f"{path}: too few properties")
        if len(instance) > schema.get("maxProperties", math.inf):
            found.append(f"{path}: too many properties")

    if isinstance(instance, list):
        if "items" in schema:
            for index, value in enumerate(instance):
                found += errors(value, schema["items"], root, f"{path}[{index}]")
        if len(instance) < schema.get("minItems", 0):
            found.append(f"{path}: too few items")
        if len(instance) > schema.get("maxItems", math.inf):
            found.append(f"{path}: too many items")

    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            found.append(f"{path}: too short")
        if len(instance) > schema.get("maxLength", math.inf):
            found.append(f"{path}: too long")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            found.append(f"{path}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _date_time(instance):
            found.append(f"{path}: not an RFC 3339 date-time")

    if _is_type(instance, "number"):
        if instance < schema.get("minimum", -math.inf):
            found.append(f"{path}: below minimum")
        if instance > schema.get("maximum", math.inf):
            found.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            found.append(f"{path}: not above exclusiveMinimum")
        if "exclusiveMaximum" in schema and instance >= schema["exclusiveMaximum"]:
            found.append(f"{path}: not below exclusiveMaximum")

    if "allOf" in schema:
        for sub in schema["allOf"]:
            found += errors(instance, sub, root, path)
    if "anyOf" in schema and not any(
        not errors(instance, sub, root, path) for sub in schema["anyOf"]
    ):
        found.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema:
        matches = sum(not errors(instance, sub, root, path) for sub in schema["oneOf"])
        if matches != 1:
            found.append(f"{path}: matches {matches} oneOf branches, not exactly 1")
    return found
