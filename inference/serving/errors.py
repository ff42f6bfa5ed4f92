"""Errors of the inference package, each with a stable machine-readable code.

Callers (the stream workers, the dead-letter writer, the CLI) branch on
``error.code`` and ``error.retriable``, never on the message text, which is for
people and names the offending value and the setting that bounds it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "IMAGE_CODES",
    "INFERENCE_CODES",
    "MODEL_CODES",
    "ImageError",
    "InferenceError",
    "InferenceRunError",
    "ModelError",
    "RetriableError",
]

#: Codes of :class:`ImageError`: the input bytes are unusable; retrying cannot help.
IMAGE_CODES: frozenset[str] = frozenset(
    {
        "image.empty",
        "image.too_large",
        "image.unsupported_format",
        "image.truncated",
        "image.decode_failed",
    }
)

#: Codes of :class:`ModelError`: the model directory, manifest or ONNX file is unusable.
MODEL_CODES: frozenset[str] = frozenset(
    {
        "model.not_found",
        "model.invalid_manifest",
        "model.checksum_mismatch",
        "model.incompatible",
        "model.load_failed",
        "model.no_int8",
    }
)

#: Codes of :class:`InferenceRunError`: running the model failed (e.g. device out of memory).
INFERENCE_CODES: frozenset[str] = frozenset({"inference.failed"})


class InferenceError(Exception):
    """Base of every error this package raises or returns as a per-item value.

    Built as ``SomeError(code, message)``, the shape of ``schemas.errors.SchemaError``
    and ``streams.worker.fetch.FetchError``. Whether retrying can help is the class's
    say (:attr:`retriable`, true under :class:`RetriableError`), not the caller's.
    """

    code: str
    retriable: ClassVar[bool] = False
    _allowed: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, code: str, message: str) -> None:
        if self._allowed and code not in self._allowed:
            raise ValueError(f"unknown {type(self).__name__} code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, InferenceError)
            and (other.code, other.message) == (self.code, self.message)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message))

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the code across pickling (process pools, multiprocessing queues).
        return (type(self), (self.code, self.message))

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-able description: code, message, retriable."""
        return {"code": self.code, "message": self.message, "retriable": self.retriable}


class RetriableError(InferenceError):
    """A failure that may pass on a later attempt (a transient device or resource problem)."""

    retriable: ClassVar[bool] = True


class ImageError(InferenceError):
    """The input is not a usable image: empty, too large, of a refused format, or corrupt."""

    _allowed = IMAGE_CODES


class ModelError(InferenceError):
    """The model directory, its manifest or its ONNX file cannot be used."""

    _allowed = MODEL_CODES


class InferenceRunError(RetriableError):
    """Running the model on a batch failed; every item of that batch carries this error."""

    _allowed = INFERENCE_CODES
