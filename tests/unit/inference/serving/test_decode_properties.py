"""Property tests: whatever bytes arrive, decoding returns RGB pixels or raises ImageError."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.serving.decode import ImageLimits, decode_image, read_header
from inference.serving.errors import IMAGE_CODES, ImageError

from .images import encode, jpeg_with_orientation, rgb_pattern

# Small limits keep a mutated header that declares a big picture from allocating much.
LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20)
PROFILE = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    picture = np.clip(
        rgb_pattern(48, 40).astype(int) + rng.integers(0, 40, (40, 48, 3)), 0, 255
    ).astype(np.uint8)
    rgba = np.dstack([picture, rng.integers(0, 256, (40, 48), dtype=np.uint8)])
    return [
        encode(".jpg", picture),
        encode(".jpg", picture, [1, 95, 2, 1]),  # quality 95, progressive
        jpeg_with_orientation(picture, 6),
        encode(".png", picture),
        encode(".png", rgba),
        encode(".png", picture[..., 0].astype(np.uint16) * 257),
        encode(".webp", picture),
        encode(".webp", picture, [64, 60]),  # lossy VP8
        encode(".webp", rgba),
        encode(".bmp", picture),
        encode(".bmp", rgba),
    ]


SEEDS = _seeds()
MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x01\x00\x00WEBP", b"BM", b"GIF89a"]


def _check(data: bytes) -> None:
    error: ImageError | None = None
    try:
        image = decode_image(data, LIMITS, min_side=16)
    except ImageError as exc:
        error = exc
    if error is not None:
        assert error.code in IMAGE_CODES
        assert error.message
        return
    assert image.pixels.dtype == np.uint8
    assert image.pixels.ndim == 3
    assert image.pixels.shape[2] == 3
    assert image.pixels.flags.c_contiguous
    assert image.width >= 1
    assert image.height >= 1


@PROFILE
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@PROFILE
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_random_bytes_behind_a_real_magic_number(magic: bytes, rest: bytes) -> None:
    _check(magic + rest)
    codes = set()
    try:
        read_header(magic + rest)
    except ImageError as exc:
        codes.add(exc.code)
    assert codes <= IMAGE_CODES


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "header"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD9, 0xDA, 0xC0]))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:  # scribble over the first 64 bytes, where the size fields live
            at = draw(st.integers(0, min(63, len(data) - 1)))
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@PROFILE
@given(mutated())
def test_mutated_images(data: bytes) -> None:
    _check(data)
