"""The committed corpus of bad events gets the dead-letter codes it promises."""

from __future__ import annotations

import json
import re

import pytest

from schemas import SchemaError, decode_inline_image, decode_order, decode_product_image
from schemas.deadletter import ERROR_CODES
from tests.unit.schemas.support import BAD_EVENTS, BadCase, bad_cases

CASES = bad_cases()
TOPICS = {"product-images", "orders"}


def _code_before_fetching(case: BadCase) -> str | None:
    """What the worker's decode step says, or None when the event reaches the fetcher."""
    code = None
    try:
        if case.topic == "orders":
            decode_order(case.raw)
        else:
            event = decode_product_image(case.raw)
            if event.image_b64 is not None:
                decode_inline_image(event)
    except SchemaError as exc:
        code = exc.code
    return code


def test_corpus_is_well_formed() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert re.fullmatch(r"[a-z0-9_]+", case.name), case.name
        assert case.topic in TOPICS, case.name
        assert case.key, case.name
        assert case.expected_code in ERROR_CODES, case.name
    document = json.loads(BAD_EVENTS.read_text(encoding="utf-8"))
    assert all(
        set(case)
        <= {
            "name",
            "topic",
            "key",
            "value_encoding",
            "value",
            "expected_code",
            "description",
            "expected_path",
        }
        for case in document["cases"]
    )


def test_corpus_covers_the_required_kinds() -> None:
    codes = {(case.topic, case.expected_code) for case in CASES}
    for topic in TOPICS:
        for code in ("json.invalid", "schema.invalid", "schema.version_unsupported"):
            assert (topic, code) in codes
    names = {case.name for case in CASES}
    for required in (
        "pi_invalid_json",
        "pi_not_utf8",
        "pi_json_array",
        "pi_missing_event_id",
        "pi_product_id_wrong_type",
        "pi_both_image_fields",
        "pi_no_image",
        "pi_bad_base64",
        "pi_schema_version_2",
        "ord_empty_items",
        "ord_negative_quantity",
        "ord_schema_version_2",
    ):
        assert required in names


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.expected_code.startswith("image.uri")], ids=lambda c: c.name
)
def test_case_gets_its_code(case: BadCase) -> None:
    def worker_decode_step() -> object:
        if case.topic == "orders":
            return decode_order(case.raw)
        return decode_inline_image(decode_product_image(case.raw))

    with pytest.raises(SchemaError) as caught:
        worker_decode_step()
    assert caught.value.code == case.expected_code
    if case.expected_path is not None:
        assert caught.value.path == case.expected_path
        field = case.expected_path.rsplit(".", 1)[-1].split("[", 1)[0]
        if field != "$":
            assert field in caught.value.message


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.expected_code.startswith("image.uri")], ids=lambda c: c.name
)
def test_uri_cases_pass_the_schema_and_reach_the_fetcher(case: BadCase) -> None:
    # tests/unit/streams/worker/test_fetch.py checks that the fetcher refuses them.
    assert _code_before_fetching(case) is None
    assert decode_product_image(case.raw).image_uri is not None
