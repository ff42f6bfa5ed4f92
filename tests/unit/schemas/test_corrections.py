"""The LabelCorrection record: its cross-field rules, its key and its compatibility."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import (
    SchemaError,
    correction_key,
    decode_label_correction,
    decode_product_labelled,
    encode,
)
from tests.unit.schemas.support import load_example


def _raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _correction(**changes: Any) -> dict[str, Any]:
    return {**load_example("LabelCorrection.v1.json"), **changes}


def test_example_round_trips_and_is_keyed_by_product() -> None:
    correction = decode_label_correction(_raw(_correction()))
    assert decode_label_correction(encode(correction)) == correction
    assert correction.decision == "relabel"
    assert correction_key(correction) == "sku-100234"


@pytest.mark.parametrize(
    "changes",
    [
        {"decision": "accept", "category": "grocery/produce", "label": None},
        {"decision": "not_a_product", "category": None, "label": None},
        {"decision": "duplicate_dismissed", "category": None, "duplicate_of": "sku-9"},
        {"decision": "duplicate_confirmed", "category": None, "duplicate_of": "sku-9"},
    ],
)
def test_each_decision_with_the_fields_it_sets(changes: dict[str, Any]) -> None:
    correction = decode_label_correction(_raw(_correction(**changes)))
    assert correction.decision == changes["decision"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"decision": "relabel", "category": None}, "category"),
        ({"decision": "accept", "category": None}, "category"),
        ({"decision": "not_a_product"}, "category"),
        ({"decision": "duplicate_dismissed", "category": None}, "duplicate_of"),
        ({"decision": "duplicate_confirmed", "duplicate_of": "sku-9"}, "category"),
        ({"decision": "relabel", "duplicate_of": "sku-9"}, "duplicate_of"),
        ({"decision": "maybe"}, "decision"),
    ],
)
def test_a_decision_without_or_with_a_stray_field_is_invalid(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        decode_label_correction(_raw(_correction(**changes)))
    assert caught.value.code == "schema.invalid"
    assert field in caught.value.message


def test_pair_decisions_have_a_key_per_pair() -> None:
    first = decode_label_correction(
        _raw(_correction(decision="duplicate_dismissed", category=None, duplicate_of="sku-1"))
    )
    second = decode_label_correction(
        _raw(_correction(decision="duplicate_dismissed", category=None, duplicate_of="sku-2"))
    )
    assert correction_key(first) == "sku-100234|sku-1"
    assert correction_key(second) == "sku-100234|sku-2"


def test_product_labelled_without_correction_fields_still_decodes() -> None:
    labelled = decode_product_labelled(_raw(load_example("ProductLabelled.v1.json")))
    assert labelled.corrected_by is None
    assert labelled.correction_id is None
