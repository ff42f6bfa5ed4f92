"""The error that every contract check in ``schemas/`` raises, with a stable code."""

from __future__ import annotations

__all__ = [
    "BASE64_INVALID",
    "DEADLETTER_INVALID",
    "IMAGE_EMPTY",
    "IMAGE_TOO_LARGE",
    "JSON_INVALID",
    "SCHEMA_INVALID",
    "VERSION_UNSUPPORTED",
    "SchemaError",
]

JSON_INVALID = "json.invalid"
"""The bytes are not UTF-8 JSON."""
SCHEMA_INVALID = "schema.invalid"
"""Valid JSON that breaks the contract (missing field, wrong type, constraint)."""
VERSION_UNSUPPORTED = "schema.version_unsupported"
"""``schema_version`` is newer than this code reads."""
BASE64_INVALID = "image.base64_invalid"
"""``image_b64`` is not strict, padded, standard base64."""
IMAGE_TOO_LARGE = "image.too_large"
"""The inline image is over the configured byte limit."""
IMAGE_EMPTY = "image.empty"
"""The inline image decodes to zero bytes."""
DEADLETTER_INVALID = "deadletter.invalid"
"""A dead-letter record lacks a required header or has a malformed one."""


class SchemaError(ValueError):
    """An input that breaks an event contract; never retriable.

    ``code`` is stable and goes into the dead-letter header ``vitrine-error-code``;
    ``message`` names the field; ``path`` is the field's JSON path (``$.items[0].quantity``)
    when msgspec reported one, else ``None``.
    """

    retriable = False

    def __init__(self, code: str, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path

    def __repr__(self) -> str:
        return f"SchemaError(code={self.code!r}, message={self.message!r}, path={self.path!r})"
