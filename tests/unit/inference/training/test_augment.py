"""Augmentation: deterministic per (seed, image, view), right shape and type."""

from __future__ import annotations

import numpy as np

from inference.training.augment import AugmentConfig, augment, random_resized_crop, view_rng


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8)


def test_views_are_reproducible_and_distinct() -> None:
    image, cfg = _image(), AugmentConfig()
    a = augment(image, 64, cfg, view_rng(3, "abc", 1))
    b = augment(image, 64, cfg, view_rng(3, "abc", 1))
    c = augment(image, 64, cfg, view_rng(3, "abc", 2))
    d = augment(image, 64, cfg, view_rng(4, "abc", 1))
    assert a.shape == (64, 64, 3)
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_without_jitter_a_full_crop_is_the_resized_image_or_its_mirror() -> None:
    image = _image()[:90]  # square, so scale 1 with ratio 1 is the whole picture
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), brightness=0, contrast=0, saturation=0)
    seen = set()
    for view in range(8):
        out = augment(image, 45, cfg, view_rng(0, "x", view))
        full = random_resized_crop(image, 45, np.random.default_rng(0), (1.0, 1.0), (1.0, 1.0))
        assert np.array_equal(out, full) or np.array_equal(out, full[:, ::-1])
        seen.add(np.array_equal(out, full))
    assert seen == {True, False}  # both flipped and unflipped views occur


def test_config_key_changes_with_parameters() -> None:
    assert AugmentConfig().key() == AugmentConfig().key()
    assert AugmentConfig(flip_p=0).key() != AugmentConfig().key()
