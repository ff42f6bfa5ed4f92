"""Preprocessing: crop geometry, equivalence with resize-then-crop, layouts and one batch array."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.samples import sample_images
from inference.serving.manifest import ModelManifest
from inference.serving.preprocess import BLUR_THRESHOLD, Preprocessor, sharpness

PRE = Preprocessor(height=224, width=224, resize_short_side=256)


def _reference(image: np.ndarray, pre: Preprocessor = PRE) -> np.ndarray:
    """The manifest's words, literally: resize the short side to 256, then crop the centre."""
    h, w = image.shape[:2]
    scale = pre.resize_short_side / min(h, w)
    resized = cv2.resize(
        image,
        (round(w * scale), round(h * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    rh, rw = resized.shape[:2]
    top, left = (rh - pre.height) // 2, (rw - pre.width) // 2
    return resized[top : top + pre.height, left : left + pre.width]


def _shifted_diff(a: np.ndarray, b: np.ndarray, shift: int = 2) -> float:
    """Smallest mean |a - b| over small translations, after a blur that hides resampling noise."""
    a, b = cv2.GaussianBlur(a, (0, 0), 1.5), cv2.GaussianBlur(b, (0, 0), 1.5)
    inner = a[shift:-shift, shift:-shift].astype(int)
    h, w = inner.shape[:2]
    return min(
        float(np.abs(inner - b[dy : dy + h, dx : dx + w].astype(int)).mean())
        for dy in range(2 * shift + 1)
        for dx in range(2 * shift + 1)
    )


@pytest.mark.parametrize(
    ("shape", "box"),
    [
        ((256, 256), (16, 16, 224, 224)),
        ((348, 348), (22, 22, 304, 304)),
        ((348, 464), (22, 80, 304, 304)),
        ((464, 348), (80, 22, 304, 304)),
        ((100, 100), (6, 6, 88, 88)),
        ((1, 1), (0, 0, 1, 1)),
    ],
)
def test_crop_box(shape: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    assert PRE.crop_box(*shape) == box


def test_crops_match_resize_then_centre_crop() -> None:
    rng = np.random.default_rng(0)
    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_images()[:6]]
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (600, 900, 3), dtype=np.uint8), (0, 0), 6)
    photos += [
        cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX),
        np.full((120, 90, 3), 77, np.uint8),
    ]
    crops = PRE.crops(photos)
    diffs = [
        _shifted_diff(crop, _reference(photo)) for photo, crop in zip(photos, crops, strict=True)
    ]
    # The same window up to sub-pixel rounding and resampling differences...
    assert max(diffs) < 4.0, diffs
    # ...while a window 8 source pixels off is clearly different.
    off = [np.roll(photo, 8, axis=(0, 1)) for photo in photos[:6]]
    assert (
        min(
            _shifted_diff(c, _reference(p)) for c, p in zip(PRE.crops(off), photos[:6], strict=True)
        )
        > 4.0
    )


def test_crops_are_written_into_one_batch_array() -> None:
    images = [np.full((300 + i, 400, 3), i, np.uint8) for i in range(5)]
    batch = PRE.crops(images)
    assert batch.shape == (5, 224, 224, 3)
    assert batch.dtype == np.uint8
    assert batch.flags.c_contiguous
    assert batch.base is None
    for i in range(5):
        assert (batch[i] == i).all()
    assert PRE.to_model_input(batch) is batch  # uint8 NHWC: handed over as is


def test_linear_downscaling_of_large_images_is_anti_aliased() -> None:
    # One-pixel stripes: plain bilinear sampling at 1/8 scale would alias them into bands.
    stripes = np.zeros((2048, 2048, 3), np.uint8)
    stripes[:, ::2] = 255
    linear = PRE.crops([stripes])[0].astype(int)
    area = Preprocessor(height=224, width=224, resize_short_side=256, interpolation="area")
    assert np.abs(linear - area.crops([stripes])[0].astype(int)).mean() < 3
    assert abs(linear.mean() - 127.5) < 3
    assert linear.std() < 5


def test_exact_size_input_is_copied_unchanged() -> None:
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pre = Preprocessor(height=224, width=224, resize_short_side=224)
    assert np.array_equal(pre.crops([image])[0], image)


def test_float_nchw_normalisation_matches_formula() -> None:
    pre = Preprocessor(
        height=224,
        width=224,
        resize_short_side=256,
        layout="NCHW",
        dtype="float32",
        normalise=True,
        mean=(127.0, 120.0, 110.0),
        std=(128.0, 64.0, 32.0),
    )
    crops = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    tensor = pre.to_model_input(crops)
    assert tensor.shape == (3, 3, 224, 224)
    assert tensor.dtype == np.float32
    mean = np.array([127.0, 120.0, 110.0], np.float32)
    std = np.array([128.0, 64.0, 32.0], np.float32)
    expected = ((crops.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(tensor, expected, rtol=1e-6, atol=1e-6)


def test_bgr_models_get_bgr_crops() -> None:
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 0] = 200  # red
    crops = Preprocessor(height=224, width=224, resize_short_side=256, bgr=True).crops([image])
    assert tuple(crops[0, 10, 10]) == (0, 0, 200)


def test_from_manifest(manifest: ModelManifest) -> None:
    pre = Preprocessor.from_manifest(manifest)
    assert (pre.height, pre.width, pre.resize_short_side) == (224, 224, 256)
    assert (pre.layout, pre.dtype, pre.normalise) == ("NHWC", "uint8", False)


def test_sharpness_separates_blurred_crops() -> None:
    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_images()]
    crops = PRE.crops(photos)
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 2.0) for c in crops])
    assert (sharpness(crops) >= BLUR_THRESHOLD).all()
    assert (sharpness(blurred) < BLUR_THRESHOLD).all()
