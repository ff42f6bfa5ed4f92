"""Perceptual fingerprints of product photos, for near-duplicate detection.

A fingerprint is a 64-bit DCT perceptual hash (pHash) of the photo (its
near-uniform margins trimmed first, so that a border does not move it), of its
mirror image, and of a 5x5 grid of 90% crops of it, with the model's embedding
and the photo's local features (:mod:`inference.serving.keypoints`).
The hash survives re-encoding and resizing (``vitrine evaluate-duplicates`` on
the val split: at most 2 of 64 bits change for JPEG quality 60 or a 70% resize),
so it finds candidates cheaply. Mirroring changes the hash completely, so a
lookup tries the mirror's hash too. Cropping 10% at a random place moves the
whole-photo hash about as far as another photo of the same product, but the
copy's hash lands near one of the original's grid crops (val: 2 bits at the
median, 6 at most), hence the grid. The hash alone does not separate a copy
from another photo of the same packaging on the same shelf (on val, some such
pairs are 0 bits apart), so candidates are verified with a second signal
(:mod:`inference.serving.duplicates`).

Pure numpy/OpenCV: usable offline (``vitrine evaluate-duplicates``) and by the
worker alike.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference.serving.keypoints import LocalFeatures, content_box, local_features

__all__ = [
    "HASH_BITS",
    "Fingerprint",
    "band_values",
    "fingerprint",
    "hamming",
    "phash",
]

logger = logging.getLogger(__name__)

HASH_BITS = 64
_DCT_SIDE = 32  # each hashed region is reduced to 32x32 grey before the DCT
_LOW = 8  # the 8x8 lowest frequencies make the 64 bits
#: The grid of crops whose hashes are indexed: 128/142 (90%) of each side of the
#: photo, at ``_GRID`` evenly spaced offsets along each axis.
_CROP_SIDE = 4 * _DCT_SIDE
#: The photo is reduced once to this square; its crops are cut from it and
#: reduced by 4x4 block means (one box sum for all of them).
_WORK_SIDE = 142
CROP_FRACTION = _CROP_SIDE / _WORK_SIDE
_GRID = 5


def _dct_basis() -> npt.NDArray[np.float32]:
    """The first ``_LOW`` rows of the orthonormal DCT-II matrix of size ``_DCT_SIDE``."""
    n = np.arange(_DCT_SIDE)
    k = np.arange(_LOW)[:, None]
    basis: npt.NDArray[np.float32] = (
        np.cos(np.pi * (2 * n + 1) * k / (2 * _DCT_SIDE)) * np.sqrt(2 / _DCT_SIDE)
    ).astype(np.float32)
    basis[0] /= np.sqrt(2)
    return basis


_BASIS = _dct_basis()


def _hashes(smalls: npt.NDArray[np.float32]) -> list[int]:
    """The hashes of a stack of 32x32 grey images: low DCT frequencies above their median."""
    coeffs = (_BASIS @ smalls @ _BASIS.T).reshape(len(smalls), -1)
    # The DC term (overall brightness) is left out of the median.
    bits = coeffs > np.median(coeffs[:, 1:], axis=1, keepdims=True)
    packed = np.packbits(bits, axis=1)
    return [int.from_bytes(row.tobytes(), "big") for row in packed]


def _small(gray: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    small = cv2.resize(gray, (_DCT_SIDE, _DCT_SIDE), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float32)


def phash(gray: npt.NDArray[np.uint8]) -> int:
    """The 64-bit DCT hash of a grey image."""
    return _hashes(_small(gray)[None])[0]


def _gray(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if rgb.ndim == 2:
        return rgb
    gray: npt.NDArray[np.uint8] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint8)
    return gray


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A photo's pHash, its mirror's, its crops', and (when the model gives one) its embedding."""

    phash: int
    mirror: int
    #: Hashes of the grid of 90% crops (what a cropped copy of this photo is close to).
    crops: tuple[int, ...] = ()
    #: L2-normalised float16, so that a dot product is the cosine.
    embedding: npt.NDArray[np.float16] | None = None
    #: ORB keypoints of the photo, margins trimmed (what verifies a disguised copy).
    features: LocalFeatures | None = None

    def cosine(self, other: Fingerprint) -> float | None:
        """Cosine of the two embeddings; None when either has none."""
        if self.embedding is None or other.embedding is None:
            return None
        if self.embedding.shape != other.embedding.shape:
            return None
        return float(np.dot(self.embedding.astype(np.float32), other.embedding.astype(np.float32)))

    @property
    def indexed(self) -> tuple[int, ...]:
        """The hashes a later copy of this photo is looked up against: whole photo and crops."""
        return (self.phash, *self.crops)

    def distance(self, original: Fingerprint) -> int:
        """Bits between this photo's hash (or its mirror's) and the nearest of ``original``'s.

        Small when this photo is a re-encoded, resized, cropped or mirrored copy of
        ``original``.
        """
        return min(hamming(q, h) for q in (self.phash, self.mirror) for h in original.indexed)

    def to_json(self) -> dict[str, object]:
        """A JSON-able form (hashes as 16 hex digits, embedding as base64 float16)."""
        emb = None if self.embedding is None else base64.b64encode(self.embedding.tobytes())
        return {
            "phash": f"{self.phash:016x}",
            "mirror": f"{self.mirror:016x}",
            "crops": [f"{h:016x}" for h in self.crops],
            "embedding": None if emb is None else emb.decode(),
            "features": (
                None
                if self.features is None
                else base64.b64encode(self.features.to_bytes()).decode()
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Fingerprint:
        """The inverse of :meth:`to_json`; raises ValueError/KeyError/TypeError if malformed."""
        emb = data.get("embedding")
        embedding = None
        if isinstance(emb, str):
            embedding = np.frombuffer(base64.b64decode(emb, validate=True), dtype=np.float16)
        feats = data.get("features")
        features = None
        if isinstance(feats, str):
            features = LocalFeatures.from_bytes(base64.b64decode(feats, validate=True))
        crops = data.get("crops") or []
        if not isinstance(crops, list):
            raise TypeError("crops must be a list")
        return cls(
            int(str(data["phash"]), 16),
            int(str(data["mirror"]), 16),
            tuple(int(str(h), 16) for h in crops),
            embedding,
            features,
        )


def fingerprint(
    pixels: npt.NDArray[np.uint8],
    embedding: npt.NDArray[np.floating] | None = None,
    *,
    with_features: bool = True,
) -> Fingerprint:
    """The fingerprint of decoded RGB (or grey) pixels and the model's embedding of them.

    ``with_features``: also the photo's local features (about 2.5 ms a photo).
    """
    gray = _gray(pixels)
    box = content_box(gray)
    features = local_features(gray, box) if with_features else None
    # Hashed without near-uniform margins, so that a border or letterboxing
    # added by a copier does not move the hash.
    top, bottom, left, right = box
    if bottom - top >= 16 and right - left >= 16:
        gray = gray[top:bottom, left:right]
    emb = None
    if embedding is not None:
        vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vec))
        emb = (vec / norm if norm > 0 else vec).astype(np.float16)
    if min(gray.shape) < 8:  # too small to crop: the whole photo only
        whole = _small(gray)
        one, mirror = _hashes(np.stack([whole, whole[:, ::-1]]))
        return Fingerprint(one, mirror, (), emb, features)
    # One reduction of the photo, then every crop from it: ~0.3 ms in all, where
    # 27 resizes of the decoded photo took ~15 ms.
    work = cv2.resize(gray, (_WORK_SIDE, _WORK_SIDE), interpolation=cv2.INTER_AREA)
    whole = _small(work)
    blocks = _block_means(work.astype(np.float32), 4)
    offsets = [round(a * (_WORK_SIDE - _CROP_SIDE)) for a in np.linspace(0.0, 1.0, _GRID)]
    crops = [
        blocks[y : y + _CROP_SIDE : 4, x : x + _CROP_SIDE : 4] for y in offsets for x in offsets
    ]
    hashes = _hashes(np.stack([whole, whole[:, ::-1], *crops]))
    return Fingerprint(hashes[0], hashes[1], tuple(hashes[2:]), emb, features)


def _block_means(img: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float32]:
    """The mean of every k x k block of ``img``, at every position (top-left anchored).

    ``(h - k + 1, w - k + 1)``: only the blocks wholly inside ``img``.
    """
    means = cv2.boxFilter(img, -1, (k, k), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    return np.asarray(means[: img.shape[0] - k + 1, : img.shape[1] - k + 1], np.float32)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (a ^ b).bit_count()


def band_values(h: int, bands: int) -> list[int]:
    """``h`` cut into ``bands`` equal runs of bits (multi-index hashing), high bits first.

    Two hashes within ``bands - 1`` bits of each other agree exactly on at
    least one band (pigeonhole), so a lookup of every band finds them.
    """
    if HASH_BITS % bands:
        raise ValueError(f"bands={bands} does not divide {HASH_BITS} bits")
    width = HASH_BITS // bands
    mask = (1 << width) - 1
    return [(h >> (HASH_BITS - width * (i + 1))) & mask for i in range(bands)]
