"""The error hierarchy: stable codes, retriability, and values that survive pickling."""

from __future__ import annotations

import pickle

import pytest

from inference.errors import (
    IMAGE_CODES,
    ImageError,
    InferenceError,
    InferenceRunError,
    ModelError,
    RetriableError,
)


def test_codes_and_retriability() -> None:
    err = ImageError("image is empty (0 bytes)", code="image.empty")
    assert isinstance(err, InferenceError)
    assert (err.code, err.retriable) == ("image.empty", False)
    assert str(err) == "image.empty: image is empty (0 bytes)"
    assert err.to_dict() == {
        "code": "image.empty",
        "message": "image is empty (0 bytes)",
        "retriable": False,
    }
    run = InferenceRunError("device out of memory")
    assert isinstance(run, RetriableError)
    assert run.retriable
    assert run.code == "inference.failed"
    assert ModelError("x").code == "model.load_failed"
    assert ImageError("x").code == "image.decode_failed"


def test_unknown_codes_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown ImageError code"):
        ImageError("x", code="image.bogus")
    with pytest.raises(ValueError, match="unknown ModelError code"):
        ModelError("x", code="image.empty")


@pytest.mark.parametrize("code", sorted(IMAGE_CODES))
def test_pickling_keeps_code_and_message(code: str) -> None:
    err = ImageError("some message", code=code)
    again = pickle.loads(pickle.dumps(err))
    assert again == err
    assert again.code == code
    assert type(again) is ImageError
    assert hash(again) == hash(err)
