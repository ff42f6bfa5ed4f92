"""The error hierarchy: stable codes, retriability, and values that survive pickling."""

from __future__ import annotations

import pickle

import pytest

from inference.serving.errors import (
    IMAGE_CODES,
    ImageError,
    InferenceError,
    InferenceRunError,
    ModelError,
    RetriableError,
)


def test_codes_and_retriability() -> None:
    err = ImageError("image.empty", "image is empty (0 bytes)")
    assert isinstance(err, InferenceError)
    assert (err.code, err.retriable) == ("image.empty", False)
    assert str(err) == "image.empty: image is empty (0 bytes)"
    assert err.to_dict() == {
        "code": "image.empty",
        "message": "image is empty (0 bytes)",
        "retriable": False,
    }
    run = InferenceRunError("inference.failed", "device out of memory")
    assert isinstance(run, RetriableError)
    assert run.retriable
    assert run.code == "inference.failed"
    assert ModelError("model.load_failed", "x").code == "model.load_failed"
    assert ImageError("image.decode_failed", "x").code == "image.decode_failed"


def test_unknown_codes_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown ImageError code"):
        ImageError("image.bogus", "x")
    with pytest.raises(ValueError, match="unknown ModelError code"):
        ModelError("image.empty", "x")


@pytest.mark.parametrize("code", sorted(IMAGE_CODES))
def test_pickling_keeps_code_and_message(code: str) -> None:
    err = ImageError(code, "some message")
    again = pickle.loads(pickle.dumps(err))
    assert again == err
    assert again.code == code
    assert type(again) is ImageError
    assert hash(again) == hash(err)


def test_same_shape_as_the_other_packages_errors() -> None:
    """``(code, message)`` positionally, with ``code``, ``message`` and ``retriable``."""
    from schemas.errors import SchemaError
    from streams.worker.fetch import FetchError

    errors = [
        ImageError("image.empty", "image is empty (0 bytes)"),
        SchemaError("image.empty", "image is empty (0 bytes)"),
        FetchError("image.empty", "image is empty (0 bytes)"),
    ]
    assert {(e.code, e.message, e.retriable) for e in errors} == {
        ("image.empty", "image is empty (0 bytes)", False)
    }
    with pytest.raises(TypeError):
        ImageError("image is empty (0 bytes)", code="image.empty")  # type: ignore[call-arg]
