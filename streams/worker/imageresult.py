"""What the image cache in Redis holds for one image: :class:`ImageResult`.

The model's :class:`~inference.serving.engine.Prediction` less its embedding,
plus the image's search descriptor: written by labelling
(:mod:`streams.worker.labelling`) after inference, read back on a cache hit,
and indexed for search (:func:`streams.worker.search.embedding_record`). It is
also the JSON that ``vitrine predict --json`` prints: one shape for a
prediction. The JSON keeps the form the cache had as a plain dict (labels as
``[label, score]`` pairs), so entries written by earlier workers still decode,
and earlier workers read these.
"""

from __future__ import annotations

import msgspec

from inference.serving.engine import Prediction

__all__ = ["ImageResult", "decode_image_result", "encode_image_result"]


class ImageResult(msgspec.Struct, frozen=True, kw_only=True):
    """An image's inference result, as cached (scores rounded to 6 digits)."""

    #: Top-k (label, probability), best first.
    labels: tuple[tuple[str, float], ...]
    category: str
    #: The category's summed probability.
    score: float
    model_name: str
    model_version: str
    flags: tuple[str, ...] = ()
    ood_score: float | None = None
    #: The search descriptor, base64 of its float16 bytes (about 350 bytes at 128
    #: dims), so that a cache hit is indexed for search without inference.
    vector: str | None = None
    #: Set when a reviewer's correction of the photo replaced the model's label
    #: (:mod:`streams.worker.corrections`); such a result is never cached.
    corrected_by: str | None = None
    correction_id: str | None = None

    @classmethod
    def of(cls, prediction: Prediction, vector: str | None = None) -> ImageResult:
        """The cached form of ``prediction`` (its embedding dropped) with its descriptor."""
        ood = prediction.ood_score
        return cls(
            labels=tuple((label, round(float(s), 6)) for label, s in prediction.labels),
            category=prediction.category,
            score=round(float(prediction.score), 6),
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            flags=tuple(prediction.flags),
            ood_score=None if ood is None else round(float(ood), 6),
            vector=vector,
        )

    @property
    def label(self) -> str:
        """The top-1 label."""
        return self.labels[0][0]

    def prediction(self) -> Prediction:
        """Back as the engine's prediction (without an embedding)."""
        return Prediction(
            labels=self.labels,
            category=self.category,
            score=self.score,
            model_name=self.model_name,
            model_version=self.model_version,
            flags=self.flags,
            ood_score=self.ood_score,
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ImageResult)


def encode_image_result(result: ImageResult) -> bytes:
    """The Redis value of ``result`` (JSON)."""
    return _encoder.encode(result)


def decode_image_result(raw: bytes) -> ImageResult | None:
    """A Redis value back as a result; None when it is not one (stray or malformed)."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
