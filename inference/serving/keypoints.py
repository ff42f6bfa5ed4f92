"""Local features of product photos and the geometric check that a photo copies another.

A copy disguised by a border, a tight crop or a small rotation defeats the
whole-photo hashes (:mod:`inference.serving.fingerprint`), but not its local
features: ORB keypoints of the copy match the original's, and the matches agree
on one similarity transform (rotation, scale, shift), which
``cv2.estimateAffinePartial2D`` finds with RANSAC. Another photo of the same
product matches on the packaging at best, with fewer matches that agree on one
transform. :func:`verify` counts those agreeing matches (inliers); the
threshold that separates copies from other photos is fitted by
``vitrine evaluate-duplicates`` (docs/INTEGRITY.md).

The features are compact so that they travel in the ``listing-fingerprints``
record and sit in the worker's index: at most :data:`MAX_POINTS` keypoints, each
a 32-byte ORB descriptor and its position as two uint16 (36 bytes a keypoint).
Near-uniform margins (a border, letterboxing) are trimmed first
(:func:`content_box`), so that the features describe the photo, not its frame.
Pure numpy/OpenCV, used by the worker and the offline evaluation alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_POINTS",
    "LocalFeatures",
    "Verification",
    "content_box",
    "local_features",
    "verify",
]

logger = logging.getLogger(__name__)

#: Keypoints kept per photo at most (the strongest): 36 bytes each.
MAX_POINTS = 160
#: Photos are reduced so that their longer side is at most this many pixels first.
_WORK_SIDE = 256
#: A margin row or column is uniform when its pixels' spread is below this (grey levels).
_UNIFORM_STD = 8.0
#: ... and its mean is this close to the margin's colour.
_UNIFORM_DELTA = 12.0
#: At most this share of each side is trimmed.
_MAX_TRIM = 0.4
#: RANSAC reprojection threshold, in pixels of the reduced photo.
_RANSAC_PX = 3.0
#: Lowe's ratio test on the two nearest descriptors.
_RATIO = 0.8


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    """A photo's ORB keypoints: positions (uint16, reduced photo) and 32-byte descriptors."""

    xy: npt.NDArray[np.uint16]
    descriptors: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.descriptors)

    @property
    def nbytes(self) -> int:
        """Bytes of the positions and descriptors."""
        return int(self.xy.nbytes + self.descriptors.nbytes)

    def to_bytes(self) -> bytes:
        """Positions then descriptors, little-endian: 36 bytes a keypoint."""
        return self.xy.astype("<u2").tobytes() + self.descriptors.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LocalFeatures:
        """The inverse of :meth:`to_bytes`; raises ValueError if malformed."""
        if len(raw) % 36:
            raise ValueError(f"local features of {len(raw)} bytes, not a multiple of 36")
        n = len(raw) // 36
        xy = np.frombuffer(raw[: 4 * n], dtype="<u2").reshape(n, 2).astype(np.uint16)
        desc = np.frombuffer(raw[4 * n :], dtype=np.uint8).reshape(n, 32).copy()
        return cls(xy, desc)


@dataclass(frozen=True, slots=True)
class Verification:
    """How well a photo's keypoints map onto another's by one similarity transform."""

    #: Matches (ratio test) that agree with the transform RANSAC found.
    inliers: int
    #: Matches that passed the ratio test.
    matches: int
    #: The transform's scale (the copy's size over the original's); 0 when none was found.
    scale: float


_NO_MATCH = Verification(0, 0, 0.0)


def _uniform_run(lines: npt.NDArray[Any], limit: int) -> int:
    """How many of ``lines`` (rows, outermost first) are near-uniform in the first one's colour.

    At most ``limit``; 0 when the outermost line is not near-uniform itself.
    """
    if limit <= 0 or len(lines) == 0:
        return 0
    first = lines[0].astype(np.float32)
    colour = float(first.mean())
    if float(first.std()) >= _UNIFORM_STD:
        return 0
    band = lines[:limit].astype(np.float32)
    spread, mean = band.std(axis=1), band.mean(axis=1)
    uniform = (spread < _UNIFORM_STD) & (np.abs(mean - colour) < _UNIFORM_DELTA)
    stop = np.flatnonzero(~uniform)
    return int(stop[0]) if len(stop) else len(band)


def content_box(gray: npt.NDArray[np.uint8]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of ``gray`` without its near-uniform margins.

    Each side is trimmed while its outermost row (column) is near-uniform and of
    about the colour of the margin's first line, up to :data:`_MAX_TRIM` of the
    side: a border or letterboxing goes, a photo with a plain background
    mostly keeps its product. Rows first, then columns between the kept rows.
    Only the lines of a margin are read (a photo without one costs four lines).
    """
    h, w = gray.shape[:2]
    limit_y, limit_x = int(h * _MAX_TRIM), int(w * _MAX_TRIM)
    top = _uniform_run(gray, limit_y)
    bottom = h - _uniform_run(gray[::-1], limit_y)
    rows = gray[top:bottom]
    left = _uniform_run(rows.T, limit_x)
    right = w - _uniform_run(rows.T[::-1], limit_x)
    return top, bottom, left, right


def local_features(
    gray: npt.NDArray[np.uint8], box: tuple[int, int, int, int] | None = None
) -> LocalFeatures:
    """The strongest ORB keypoints of grey pixels, margins trimmed, reduced photo.

    ``box``: the photo's :func:`content_box`, when the caller has it already.
    """
    top, bottom, left, right = content_box(gray) if box is None else box
    if bottom - top >= 16 and right - left >= 16:
        gray = gray[top:bottom, left:right]
    h, w = gray.shape[:2]
    side = max(h, w)
    if side > _WORK_SIDE:
        f = _WORK_SIDE / side
        size = (max(1, round(w * f)), max(1, round(h * f)))
        gray = np.asarray(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), np.uint8)
    # A detector per call: OpenCV's are not safe to share between the executor's threads.
    # 4 pyramid levels on a 256-pixel photo: about 2.5 ms a photo where 8 levels on
    # 320 pixels took about 5, for as many inliers on copies (docs/INTEGRITY.md).
    orb = cv2.ORB_create(  # type: ignore[attr-defined]
        nfeatures=MAX_POINTS, nlevels=4, fastThreshold=10, edgeThreshold=15, patchSize=15
    )
    kps, desc = orb.detectAndCompute(np.ascontiguousarray(gray), None)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.uint16), np.zeros((0, 32), np.uint8))
    order = np.argsort([-k.response for k in kps], kind="stable")[:MAX_POINTS]
    xy = np.array([kps[i].pt for i in order], np.float32)
    return LocalFeatures(
        np.clip(np.rint(xy), 0, 65535).astype(np.uint16), np.ascontiguousarray(desc[order])
    )


def verify(photo: LocalFeatures, original: LocalFeatures) -> Verification:
    """How many of ``photo``'s keypoints map onto ``original``'s by one similarity transform."""
    if len(photo) < 3 or len(original) < 3:
        return _NO_MATCH
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(photo.descriptors, original.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < _RATIO * p[1].distance]
    if len(good) < 3:
        return Verification(0, len(good), 0.0)
    src = photo.xy[[m.queryIdx for m in good]].astype(np.float32)
    dst = original.xy[[m.trainIdx for m in good]].astype(np.float32)
    model, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX, maxIters=500
    )
    if model is None or mask is None:
        return Verification(0, len(good), 0.0)
    scale = float(np.hypot(model[0, 0], model[1, 0]))
    return Verification(int(mask.sum()), len(good), scale)
