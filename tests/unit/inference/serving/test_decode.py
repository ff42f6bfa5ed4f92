"""Decoding: formats, colour handling, flags, limits and refusals, with known pixels."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from inference.serving.decode import (
    FLAGS,
    DecodedImage,
    ImageLimits,
    decode_image,
    read_header,
    sniff_format,
)
from inference.serving.errors import ImageError

from .images import encode, jpeg_with_orientation, pil_bytes, rgb_pattern

LIMITS = ImageLimits()


def _decode(data: bytes, **kwargs: object) -> DecodedImage:
    result = decode_image(data, LIMITS, **kwargs)  # type: ignore[arg-type]
    assert result.pixels.dtype == np.uint8
    assert result.pixels.ndim == 3
    assert result.pixels.shape[2] == 3
    assert result.pixels.flags.c_contiguous
    assert set(result.flags) <= set(FLAGS)
    return result


def _quadrants(pixels: np.ndarray) -> list[tuple[int, ...]]:
    h, w = pixels.shape[:2]
    points = [
        (h // 4, w // 4),
        (h // 4, 3 * w // 4),
        (3 * h // 4, w // 4),
        (3 * h // 4, 3 * w // 4),
    ]
    return [tuple(int(v) for v in pixels[y, x]) for y, x in points]


QUADRANTS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


def _close(actual: list[tuple[int, ...]], expected: list[tuple[int, ...]], tol: int) -> bool:
    return all(
        abs(a - e) <= tol
        for av, ev in zip(actual, expected, strict=True)
        for a, e in zip(av, ev, strict=True)
    )


@pytest.mark.parametrize(
    ("ext", "fmt", "tol"),
    [
        (".jpg", "jpeg", 12),
        (".png", "png", 0),
        (".webp", "webp", 0),  # OpenCV writes lossless WebP at its default quality
        (".bmp", "bmp", 0),
    ],
)
def test_each_accepted_format_decodes_to_rgb(ext: str, fmt: str, tol: int) -> None:
    data = encode(ext, rgb_pattern(64, 48))
    assert sniff_format(data) == fmt
    image = _decode(data)
    assert (image.format, image.width, image.height, image.scale) == (fmt, 64, 48, 1)
    assert image.pixels.shape == (48, 64, 3)
    assert _close(_quadrants(image.pixels), QUADRANTS, tol)
    assert "low_resolution" in image.flags


@pytest.mark.parametrize(
    ("ext", "size"),
    [(e, s) for e in (".jpg", ".png", ".webp", ".bmp") for s in [(1, 1), (17, 5), (300, 200)]],
)
def test_header_size_matches_decoded_size(ext: str, size: tuple[int, int]) -> None:
    w, h = size
    data = encode(ext, np.full((h, w, 3), 90, np.uint8))
    header = read_header(data)
    assert (header.width, header.height) == (w, h)
    assert header.truncated == ""
    assert _decode(data).pixels.shape == (h, w, 3)


def test_grayscale_jpeg_and_png_are_expanded_and_flagged() -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    for ext in (".jpg", ".png"):
        image = _decode(encode(ext, grey))
        assert "grayscale" in image.flags
        assert np.array_equal(image.pixels[..., 0], image.pixels[..., 2])


def test_rgb_picture_of_grey_content_is_flagged_grayscale() -> None:
    grey_rgb = np.repeat(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))[..., None], 3, 2)
    assert "grayscale" in _decode(encode(".jpg", grey_rgb)).flags
    assert "grayscale" not in _decode(encode(".jpg", rgb_pattern())).flags


def test_transparent_png_is_composited_on_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 0)  # fully transparent red: must become white
    rgba[:, 10:] = (255, 0, 0, 128)  # half-transparent red: pink
    image = _decode(encode(".png", rgba))
    assert "had_alpha" in image.flags
    assert tuple(image.pixels[5, 2]) == (255, 255, 255)
    r, g, b = (int(v) for v in image.pixels[5, 15])
    assert r == 255
    assert abs(g - 127) <= 1
    assert abs(b - 127) <= 1


def test_compositing_covers_every_row_band() -> None:
    rgba = np.zeros((1100, 4, 4), np.uint8)
    rgba[..., 1] = 200  # green
    rgba[::2, :, 3] = 255  # even rows opaque, odd rows transparent
    pixels = _decode(encode(".png", rgba)).pixels
    assert (pixels[::2] == (0, 200, 0)).all()
    assert (pixels[1::2] == 255).all()


def test_opaque_alpha_channel_is_not_flagged() -> None:
    rgba = np.dstack([rgb_pattern(), np.full((48, 64), 255, np.uint8)])
    image = _decode(encode(".png", rgba))
    assert "had_alpha" not in image.flags
    assert _close(_quadrants(image.pixels), QUADRANTS, 0)


@pytest.mark.parametrize("mode", ["LA", "P", "L-trns", "RGB-trns"])
def test_other_png_transparency_kinds(mode: str) -> None:
    if mode == "LA":
        data = pil_bytes(Image.new("LA", (8, 8), (0, 0)), "PNG")
    elif mode == "P":
        img = Image.new("P", (8, 8), 0)
        img.putpalette([0, 0, 0, 0, 255, 0])
        data = pil_bytes(img, "PNG", transparency=0)
    elif mode == "L-trns":
        data = pil_bytes(Image.new("L", (8, 8), 30), "PNG", transparency=30)
    else:
        data = pil_bytes(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG", transparency=(1, 2, 3))
    image = _decode(data)
    assert image.pixels.shape == (8, 8, 3)
    if mode != "L-trns":  # OpenCV ignores tRNS on 8-bit grey; the picture still decodes
        assert tuple(image.pixels[0, 0]) == (255, 255, 255)
        assert "had_alpha" in image.flags


def test_webp_with_alpha_is_composited() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 2] = 255  # transparent blue
    image = _decode(encode(".webp", rgba))
    assert tuple(image.pixels[3, 3]) == (255, 255, 255)
    assert "had_alpha" in image.flags


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 32896  # 128 * 257
    image = _decode(encode(".png", rgb16))
    assert tuple(image.pixels[0, 0]) == (255, 128, 0)
    assert "high_bit_depth" in image.flags


def test_sixteen_bit_rgba_and_grey() -> None:
    rgba16 = np.zeros((4, 4, 4), np.uint16)
    rgba16[..., 0] = 65535
    rgba16[..., 3] = 65535
    rgba16[0, 0, 3] = 0
    image = _decode(encode(".png", rgba16))
    assert tuple(image.pixels[1, 1]) == (255, 0, 0)
    assert tuple(image.pixels[0, 0]) == (255, 255, 255)
    assert {"high_bit_depth", "had_alpha"} <= set(image.flags)
    grey16 = np.full((4, 4), 257 * 200, np.uint16)
    image = _decode(encode(".png", grey16))
    assert tuple(image.pixels[0, 0]) == (200, 200, 200)
    assert {"high_bit_depth", "grayscale"} <= set(image.flags)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    data = pil_bytes(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    image = _decode(data)
    r, g, b = (int(v) for v in image.pixels[10, 10])
    assert r > 240
    assert g < 15
    assert b < 15
    assert "cmyk" in image.flags


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = rgb_pattern(80, 40)
    data = jpeg_with_orientation(stored, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(__import__("io").BytesIO(data))))
    image = _decode(data)
    assert image.pixels.shape == expected.shape
    assert (image.width, image.height) == (expected.shape[1], expected.shape[0])
    assert _close(_quadrants(image.pixels), _quadrants(expected), 12)
    assert ("exif_rotated" in image.flags) == (orientation != 1)


def test_reduced_decoding_keeps_exif_orientation_and_reports_original_size() -> None:
    stored = cv2.resize(rgb_pattern(), (1200, 600), interpolation=cv2.INTER_NEAREST)
    data = jpeg_with_orientation(stored, 6)  # rotate 90 degrees clockwise: 600x1200 displayed
    full = _decode(data)
    reduced = _decode(data, min_side=256)
    assert (full.width, full.height) == (reduced.width, reduced.height) == (600, 1200)
    assert reduced.scale == 2
    assert reduced.pixels.shape == (600, 300, 3)
    assert _close(_quadrants(reduced.pixels), _quadrants(full.pixels), 12)


@pytest.mark.parametrize(
    ("size", "min_side", "scale"),
    [((2400, 1800), 256, 4), ((2400, 1800), 224, 8), ((1000, 600), 256, 2), ((500, 500), 256, 1),
     ((2400, 1800), None, 1)],
)  # fmt: skip
def test_reduction_factor_keeps_short_side_above_min_side(
    size: tuple[int, int], min_side: int | None, scale: int
) -> None:
    w, h = size
    data = encode(".jpg", np.full((h, w, 3), 120, np.uint8))
    image = _decode(data, min_side=min_side)
    assert image.scale == scale
    assert image.pixels.shape[:2] == (h // scale, w // scale)
    assert (image.width, image.height) == (w, h)


def test_non_jpeg_is_never_reduced() -> None:
    data = encode(".png", np.zeros((1200, 1200, 3), np.uint8))
    assert _decode(data, min_side=256).scale == 1


def test_low_resolution_and_aspect_flags() -> None:
    assert (
        "low_resolution"
        in _decode(encode(".png", np.zeros((200, 300, 3), np.uint8)), min_side=256).flags
    )
    assert (
        "low_resolution"
        not in _decode(encode(".png", np.zeros((256, 300, 3), np.uint8)), min_side=256).flags
    )
    assert (
        "extreme_aspect_ratio" in _decode(encode(".png", np.zeros((100, 400, 3), np.uint8))).flags
    )
    assert (
        "extreme_aspect_ratio"
        not in _decode(encode(".png", np.zeros((100, 300, 3), np.uint8))).flags
    )


def test_animated_webp_uses_first_frame_and_is_flagged() -> None:
    frames = [
        Image.new("RGB", (20, 20), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    ]
    data = pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    image = _decode(data)
    assert "animated" in image.flags
    assert image.pixels.shape == (20, 20, 3)


def test_32_bit_bmp_with_zero_padding_byte_is_opaque() -> None:
    xrgb = np.dstack([rgb_pattern(), np.zeros((48, 64), np.uint8)])
    data = encode(".bmp", xrgb)  # OpenCV writes a V5 header with an alpha mask
    assert read_header(data).has_alpha
    image = _decode(data)
    assert _close(_quadrants(image.pixels), QUADRANTS, 0)
    assert "had_alpha" not in image.flags


def test_top_down_and_32_bit_bmp() -> None:
    rgba = np.dstack([rgb_pattern(), np.full((48, 64), 255, np.uint8)])
    assert _close(_quadrants(_decode(encode(".bmp", rgba)).pixels), QUADRANTS, 0)
    bottom_up = encode(".bmp", rgb_pattern())
    height = struct.unpack_from("<i", bottom_up, 22)[0]
    rows = np.frombuffer(bottom_up[54:], np.uint8).reshape(48, -1)[::-1].tobytes()
    top_down = bottom_up[:22] + struct.pack("<i", -height) + bottom_up[26:54] + rows
    assert _close(_quadrants(_decode(top_down).pixels), QUADRANTS, 0)


# ----------------------------------------------------------------------------- limits


def test_too_many_bytes_names_the_limit_and_setting() -> None:
    data = encode(".png", rgb_pattern())
    with pytest.raises(ImageError) as info:
        decode_image(data, ImageLimits(max_bytes=100))
    assert info.value.code == "image.too_large"
    assert info.value.message == (
        f"image is {len(data)} bytes, over max_image_bytes=100 (VITRINE_MAX_IMAGE_BYTES)"
    )


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_too_many_pixels_is_refused_before_any_allocation() -> None:
    data = _png_header_only(48_000, 48_000)
    assert len(data) < 200
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as info:
            decode_image(data, ImageLimits(max_pixels=40_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "image.too_large"
    assert info.value.message == (
        "image is 48000x48000 pixels, over max_image_pixels=40000000 (VITRINE_MAX_IMAGE_PIXELS)"
    )
    assert peak < 1_000_000


def test_pixel_limit_is_inclusive() -> None:
    data = encode(".png", np.zeros((10, 10, 3), np.uint8))
    assert decode_image(data, ImageLimits(max_pixels=100)).pixels.shape == (10, 10, 3)
    with pytest.raises(ImageError, match="10x10 pixels, over max_image_pixels=99"):
        decode_image(data, ImageLimits(max_pixels=99))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ImageLimits(max_bytes=0)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"GIF89a" + bytes(20), "GIF image"),
        (b"II*\x00" + bytes(20), "TIFF image"),
        (b"%PDF-1.7\n", "PDF document"),
        (b"\x7fELF\x02\x01\x01", "ELF executable"),
        (b"MZ\x90\x00", "Windows executable"),
        (b"PK\x03\x04", "ZIP archive"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(16), "AVIF image"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "RIFF 'WAVE' container"),
        (b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>", "SVG image"),
        (b"<?xml version='1.0'?><svg/>", "SVG image"),
        (b"\n<!DOCTYPE HTML><html>", "HTML document"),
        (b"<?xml version='1.0'?><feed/>", "XML document"),
        (b'{"image": "no"}', "JSON or text data"),
        ("caf\u00e9 au lait, d\u00e9j\u00e0 vu\n".encode(), "text"),
        (bytes(range(256)), "unrecognised binary data"),
        (b"BM" + bytes(30), "BMP-like data"),
    ],
)
def test_unsupported_formats_are_named(data: bytes, detected: str) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data, LIMITS)
    assert info.value.code == "image.unsupported_format"
    assert f"detected {detected}" in info.value.message
    assert "accepted formats are JPEG, PNG, WebP and BMP" in info.value.message


def test_empty_input() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(b"", LIMITS)
    assert info.value.code == "image.empty"
    with pytest.raises(ImageError, match="empty"):
        sniff_format(b"")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_truncated_files_are_refused(ext: str, keep: float) -> None:
    data = encode(
        ext,
        rgb_pattern(160, 120)
        + np.random.default_rng(1).integers(0, 30, (120, 160, 3), dtype=np.uint8),
    )
    with pytest.raises(ImageError) as info:
        decode_image(data[: int(len(data) * keep)], LIMITS)
    assert info.value.code == "image.truncated"


def test_jpeg_with_trailing_bytes_after_eoi_still_decodes() -> None:
    data = encode(".jpg", rgb_pattern()) + b"\x00" * 100
    assert _decode(data).pixels.shape == (48, 64, 3)
