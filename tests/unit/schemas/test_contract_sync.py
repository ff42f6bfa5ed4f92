"""The JSON Schema files, the msgspec records and the committed examples agree."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas import RECORD_TYPES, ProductImageEvent, SchemaError, decode
from schemas.json_schema import (
    DIALECT,
    json_schema,
    load_json_schema,
    main,
    render,
    schema_path,
)
from tests.unit.schemas.jsonschema_subset import errors
from tests.unit.schemas.support import EXAMPLES_DIR, example_paths, example_type

TYPE_IDS = [t.__name__ for t in RECORD_TYPES]


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=TYPE_IDS)
def test_committed_schema_file_is_what_the_record_generates(
    record_type: type[msgspec.Struct],
) -> None:
    committed = schema_path(record_type).read_text(encoding="utf-8")
    assert committed == render(json_schema(record_type)), (
        f"{schema_path(record_type).name} and schemas.records.{record_type.__name__} differ;"
        " run: .venv/bin/python -m schemas.json_schema --write"
    )


def test_check_command_passes_on_the_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=TYPE_IDS)
def test_schema_file_shape(record_type: type[msgspec.Struct]) -> None:
    """Independently of the generator: fields, required set and draft match the record."""
    document = load_json_schema(record_type)
    assert document["$schema"] == DIALECT
    assert document["type"] == "object"
    assert document.get("additionalProperties", True) is not False, "must stay open"
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    assert list(document["properties"]) == [f.encode_name for f in info.fields]
    assert set(document["required"]) == {f.encode_name for f in info.fields if f.required}
    for field in ("schema_version", "event_id", "occurred_at"):
        assert field in document["required"]
    assert document["properties"]["schema_version"]["type"] == "integer"
    assert document["properties"]["occurred_at"]["format"] == "date-time"
    for name in document["properties"]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_every_record_type_has_an_example() -> None:
    covered = {example_type(path) for path in example_paths()}
    assert covered == set(RECORD_TYPES)


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_v1_examples_are_valid_for_schema_file_and_record(path: Path) -> None:
    """Compatibility: the committed v1 examples must keep parsing."""
    record_type = example_type(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema_version"] == 1
    assert errors(document, load_json_schema(record_type)) == []
    record = decode(path.read_bytes(), record_type)  # type: ignore[type-var]
    # Nothing in an example is ignored as unknown: re-encoding keeps every field.
    assert set(document) <= set(json.loads(msgspec.json.encode(record)))


def _replace(root: Any, parts: list[str | int], value: Any) -> Any:
    root = copy.deepcopy(root)
    target = root
    for part in parts[:-1]:
        target = target[part]
    if value is ...:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return root


_BAD_VALUES: list[Any] = [None, True, -1, 0, 10**12, 0.5, "", "x", "x" * 3000, [], {}, [{}]]


def _walk(root: Any, parts: list[str | int], label: str) -> Iterator[tuple[str, Any]]:
    node: Any = root
    for part in parts:
        node = node[part]
    if isinstance(node, dict):
        for key in node:
            child = [*parts, key]
            yield f"{label}.{key} deleted", _replace(root, child, ...)
            yield from _walk(root, child, f"{label}.{key}")
        yield f"{label} + unknown field", _replace(root, [*parts, "zz_unknown"], {"a": [1]})
    elif isinstance(node, list) and node:
        yield f"{label}[0] deleted", _replace(root, [*parts, 0], ...)
        yield from _walk(root, [*parts, 0], f"{label}[0]")
    if parts:
        for value in _BAD_VALUES:
            if value != node:
                yield f"{label} = {value!r:.30}", _replace(root, parts, value)


def _agreement_cases() -> list[tuple[str, type[msgspec.Struct], Any]]:
    cases = []
    for path in example_paths():
        document = json.loads(path.read_text(encoding="utf-8"))
        for label, mutated in _walk(document, [], "$"):
            cases.append((f"{path.name}: {label}", example_type(path), mutated))
    image = json.loads((EXAMPLES_DIR / "ProductImageEvent.v1.json").read_text())
    both = {**image, "image_uri": "https://images.example.com/a.jpg"}
    cases.append(("ProductImageEvent.v1.json: + image_uri", ProductImageEvent, both))
    return cases


AGREEMENT = _agreement_cases()


def test_agreement_corpus_has_both_outcomes() -> None:
    files = {record_type: load_json_schema(record_type) for record_type in RECORD_TYPES}
    outcomes = {not errors(document, files[record_type]) for _, record_type, document in AGREEMENT}
    assert outcomes == {True, False}
    assert len(AGREEMENT) > 500


def _record_error(record_type: type[msgspec.Struct], document: Any) -> str | None:
    try:
        decode(json.dumps(document).encode(), record_type)  # type: ignore[type-var]
    except SchemaError as exc:
        # A newer version is valid JSON-Schema-wise; the record refuses it by rule.
        if exc.code != "schema.version_unsupported":
            return f"{exc.code}: {exc.message}"
    return None


def test_schema_file_and_record_agree_on_mutated_examples() -> None:
    """Each example mutated once at every field and depth: both validators agree."""
    disagreements = []
    files = {record_type: load_json_schema(record_type) for record_type in RECORD_TYPES}
    for label, record_type, document in AGREEMENT:
        schema_errors = errors(document, files[record_type])
        record_error = _record_error(record_type, document)
        if (schema_errors == []) != (record_error is None):
            disagreements.append(
                f"{label}: JSON Schema says {schema_errors or 'valid'}, "
                f"record says {record_error or 'valid'}"
            )
    assert disagreements == []
