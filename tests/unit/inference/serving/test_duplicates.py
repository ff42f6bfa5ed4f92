"""Perceptual fingerprints and the near-duplicate rule on real product photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from inference.serving.duplicates import BANDS, DuplicateRule, index_bands, lookup_bands
from inference.serving.fingerprint import Fingerprint, band_values, fingerprint, hamming, phash

PHOTOS = Path(__file__).resolve().parents[3] / "fixtures" / "tiny_dataset"


def _rgb(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _reencoded(rgb: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


@pytest.fixture(scope="module")
def milk() -> npt.NDArray[np.uint8]:
    return _rgb(PHOTOS / "Oatly-Oat-Milk" / "Oatly-Oat-Milk_014.jpg")


def test_copies_are_near_and_other_photos_far(milk: npt.NDArray[np.uint8]) -> None:
    h, w = milk.shape[:2]
    original = fingerprint(milk)
    copies = {
        "q60": _reencoded(milk, 60),
        "resized70": cv2.resize(milk, (int(w * 0.7), int(h * 0.7)), interpolation=cv2.INTER_AREA),
        "mirrored": np.ascontiguousarray(milk[:, ::-1]),
        "cropped10": np.ascontiguousarray(milk[: int(h * 0.9), int(w * 0.1) :]),
    }
    for name, img in copies.items():
        assert fingerprint(img).distance(original) <= 6, name
    # Mirroring flips the hash itself; only the mirror-invariant distance finds it.
    mirrored = fingerprint(copies["mirrored"])
    assert hamming(mirrored.phash, original.phash) > 16
    others = [p for p in sorted((PHOTOS / "Oatly-Oat-Milk").glob("*.jpg")) if "_014" not in p.name]
    assert others
    for path in others:
        assert fingerprint(_rgb(path)).distance(original) > 8, path.name


def test_rule_needs_both_signals() -> None:
    emb = np.zeros(4, dtype=np.float32)
    emb[0] = 1
    other = np.zeros(4, dtype=np.float32)
    other[1] = 1
    a = fingerprint(np.full((64, 64, 3), 10, np.uint8), emb)
    same_hash_other_photo = Fingerprint(a.phash, a.mirror, a.crops, other.astype(np.float16))
    rule = DuplicateRule(max_hamming=8, min_cosine=0.8)
    match = rule.match(a, a)
    assert match is not None
    assert match.hamming == 0
    assert match.cosine == pytest.approx(1.0)
    assert rule.match(same_hash_other_photo, a) is None, "embeddings disagree"
    far = Fingerprint(~a.phash & (2**64 - 1), ~a.mirror & (2**64 - 1), (), a.embedding)
    assert rule.match(far, Fingerprint(a.phash, a.mirror, (), a.embedding)) is None
    hashes_only = Fingerprint(a.phash, a.mirror, a.crops)
    assert rule.match(hashes_only, a) is not None, "without embeddings the hash decides"


def test_bands_find_hashes_within_fewer_bits_than_bands(milk: npt.NDArray[np.uint8]) -> None:
    original = fingerprint(milk)
    indexed = set(index_bands(original))
    rng = np.random.default_rng(0)
    for _ in range(50):
        flip = rng.choice(64, size=BANDS - 1, replace=False)
        query = original.phash ^ sum(1 << int(b) for b in flip)
        assert lookup_bands(Fingerprint(query, query)) & indexed
    assert band_values(0x0123456789ABCDEF, 4) == [0x0123, 0x4567, 0x89AB, 0xCDEF]
    with pytest.raises(ValueError, match="does not divide"):
        band_values(1, 5)


def test_json_round_trip_and_small_images(milk: npt.NDArray[np.uint8]) -> None:
    fp = fingerprint(milk, np.arange(8, dtype=np.float32))
    back = Fingerprint.from_json(fp.to_json())
    assert (back.phash, back.mirror, back.crops) == (fp.phash, fp.mirror, fp.crops)
    assert back.embedding is not None
    assert fp.embedding is not None
    assert np.array_equal(back.embedding, fp.embedding)
    assert len(fp.crops) == 25
    tiny = fingerprint(np.zeros((4, 4, 3), np.uint8))
    assert tiny.crops == ()
    assert phash(np.zeros((1, 1), np.uint8)) == 0


def test_verified_features_accept_what_the_hash_or_embedding_alone_refuse(
    milk: npt.NDArray[np.uint8],
) -> None:
    emb = np.eye(4, dtype=np.float32)
    original = fingerprint(milk, emb[0])
    h, w = milk.shape[:2]
    # A rotated copy: the hash moves far, the features still map by one transform.
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0)
    rotated = fingerprint(np.ascontiguousarray(cv2.warpAffine(milk, m, (w, h))), emb[0])
    assert rotated.distance(original) > 8
    assert DuplicateRule(8, 0.8, 0, 0).match(rotated, original) is None
    got = DuplicateRule(8, 0.8, 30).match(rotated, original)
    assert got is not None
    assert got.step == "verified"
    assert got.inliers is not None
    assert got.inliers >= 30
    # A near hash whose embedding moved (a recoloured copy): accepted by its features.
    recoloured = fingerprint(_reencoded(milk, 70), emb[1])
    assert DuplicateRule(8, 0.8, 0, 0).match(recoloured, original) is None, "cosine 0"
    by_hash = DuplicateRule(8, 0.8, 0, 30).match(recoloured, original)
    assert by_hash is not None
    assert by_hash.step == "verified"
    other = fingerprint(_rgb(PHOTOS / "Oatly-Oat-Milk" / "Oatly-Oat-Milk_004.jpg"), emb[0])
    assert DuplicateRule(8, 0.8, 30, 30).match(other, original) is None, "another shot"
