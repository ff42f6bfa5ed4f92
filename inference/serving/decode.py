"""Untrusted image bytes -> RGB uint8 pixels, refusing anything unsafe before it is decoded.

The order of checks is the point of this module:

1. size in bytes against ``max_bytes``;
2. the format, sniffed from magic bytes, against an allow-list (JPEG, PNG, WebP,
   BMP); anything else is refused and named (GIF, TIFF, PDF, HTML, SVG, ELF...);
3. width and height parsed from the header alone (JPEG SOF, PNG IHDR, WebP
   VP8/VP8L/VP8X, BMP info header) against ``max_pixels``, so that a few-KB
   "decompression bomb" is refused before OpenCV allocates anything;
4. completeness (JPEG EOI, PNG IEND, RIFF and BMP sizes): truncated files are
   refused instead of decoded into half-grey pictures;
5. only then ``cv2.imdecode``, reduced by 2/4/8 in the JPEG decoder itself when
   the picture is much larger than the model needs (EXIF orientation is applied
   in every mode).

The result is always ``(H, W, 3)`` uint8 RGB: grayscale is expanded, alpha is
composited on white, 16-bit samples are scaled to 8 bits, CMYK is converted,
and quality flags record what was done. Every failure is an :class:`ImageError`
with a stable code; nothing else escapes :func:`decode_image`.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference.serving.errors import ImageError

__all__ = [
    "FLAGS",
    "LOCAL_FILE_LIMITS",
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ImageHeader",
    "ImageLimits",
    "decode_image",
    "read_header",
    "sniff_format",
]

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "bmp")

#: Quality and integrity flags that decoding (and preprocessing) may attach to an image.
FLAGS: dict[str, str] = {
    "low_resolution": "short side below the size the model resizes to; the crop is upscaled",
    "grayscale": "no colour information",
    "had_alpha": "transparent pixels, composited on white",
    "high_bit_depth": "16-bit samples, scaled to 8 bits",
    "cmyk": "CMYK JPEG, converted to RGB",
    "exif_rotated": "EXIF orientation applied",
    "animated": "animated image; only the first frame is used",
    "extreme_aspect_ratio": "long side over 3x the short side; the centre crop misses most of it",
    "blurry": "little high-frequency detail in the model's crop",
}

_EXTREME_ASPECT = 3.0
_COMPOSITE_ROWS = 512
_DEFAULT_MIN_SIDE = 224


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied to every image before it is decoded."""

    max_bytes: int = 10 * 1024 * 1024  # VITRINE_MAX_IMAGE_BYTES
    max_pixels: int = 40_000_000  # VITRINE_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(
                f"image limits must be positive, got max_bytes={self.max_bytes}, "
                f"max_pixels={self.max_pixels}"
            )


#: Limits for images read from local files the caller chose (training and evaluation
#: data, the shipped samples), not from events. The worker's limits (the defaults
#: above, or VITRINE_MAX_IMAGE_BYTES / VITRINE_MAX_IMAGE_PIXELS) guard it against
#: hostile or careless uploads; a data set's own photos are trusted and may be
#: full-resolution camera files over them, yet a corrupt or absurd file is still
#: refused before its pixels are allocated.
LOCAL_FILE_LIMITS = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000)


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, read without decoding pixels.

    ``width`` and ``height`` are as stored, before EXIF orientation.
    """

    format: str
    width: int
    height: int
    bit_depth: int = 8
    has_alpha: bool = False
    grayscale: bool = False
    cmyk: bool = False
    animated: bool = False
    orientation: int = 1
    truncated: str = ""  # why the file looks incomplete; empty when it looks whole

    @property
    def pixels(self) -> int:
        """Declared number of pixels."""
        return self.width * self.height

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) once EXIF orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """Decoded pixels and what is known about them.

    ``width``/``height`` are the picture's size as displayed (EXIF orientation
    applied) before any reduced decoding; ``pixels`` may be smaller by ``scale``.
    """

    pixels: npt.NDArray[np.uint8]
    format: str
    width: int
    height: int
    flags: tuple[str, ...] = field(default=())
    scale: int = 1


# --------------------------------------------------------------------------- sniffing

_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"II+\x00", "BigTIFF image"),
    (b"MM\x00+", "BigTIFF image"),
    (b"%PDF", "PDF document"),
    (b"%!PS", "PostScript document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL image"),
    (b"\xff\x0a", "JPEG XL codestream"),
    (b"8BPS", "Photoshop document"),
    (b"\x00\x00\x01\x00", "ICO icon"),
    (b"\x00\x00\x02\x00", "CUR cursor"),
    (b"\x76\x2f\x31\x01", "OpenEXR image"),
    (b"#?RADIANCE", "Radiance HDR image"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Java class or Mach-O universal binary"),
    (b"#!", "script"),
    (b"PK\x03\x04", "ZIP archive (or Office document)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "Zstandard archive"),
    (b"Rar!", "RAR archive"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (b"SQLite format 3", "SQLite database"),
    (b"\x00asm", "WebAssembly module"),
)

_ISO_BRANDS: dict[bytes, str] = {
    b"avif": "AVIF image",
    b"avis": "AVIF image sequence",
    b"heic": "HEIC image",
    b"heix": "HEIC image",
    b"hevc": "HEIC image sequence",
    b"heim": "HEIC image",
    b"heis": "HEIC image",
    b"mif1": "HEIF image",
    b"msf1": "HEIF image sequence",
}

_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _describe_unsupported(data: bytes) -> str:
    """Name what ``data`` looks like, for the error message."""
    for magic, name in _REFUSED_MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _ISO_BRANDS.get(data[8:12], "ISO media file (MP4/MOV/3GP)")
    if data.startswith(b"RIFF") and len(data) >= 12:
        fourcc = data[8:12].decode("latin-1").strip()
        return f"RIFF {fourcc!r} container" if fourcc.isprintable() else "RIFF container"
    if data.startswith(b"BM"):
        return "BMP-like data with an unknown header"
    text = data[:1024]
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if text.startswith(bom):
            text = text[len(bom) :]
            break
    head = text.lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG image"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML document"
    if head.startswith(b"<?xml"):
        return "XML document"
    if head.startswith((b"{", b"[")):
        return "JSON or text data"
    # A multi-byte character cut at the 1024-byte boundary is not binary data.
    decoded = text.decode("utf-8", errors="replace").rstrip("\ufffd")
    readable = sum(c != "\ufffd" and (c.isprintable() or c.isspace()) for c in decoded)
    if decoded and readable >= 0.95 * len(decoded):
        return "text"
    return "unrecognised binary data"


def sniff_format(data: bytes) -> str:
    """Return ``"jpeg"``, ``"png"``, ``"webp"`` or ``"bmp"`` from the magic bytes.

    Raise ``image.empty`` for no bytes and ``image.unsupported_format`` (naming
    what was detected) for anything else.
    """
    if not data:
        raise ImageError("image.empty", "image is empty (0 bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if (
        data.startswith(b"BM")
        and len(data) >= 18
        and struct.unpack_from("<I", data, 14)[0] in _BMP_INFO_SIZES
    ):
        return "bmp"
    raise ImageError(
        "image.unsupported_format",
        f"unsupported image format: detected {_describe_unsupported(data)}; "
        "accepted formats are JPEG, PNG, WebP and BMP",
    )


# --------------------------------------------------------------------------- headers


def _truncated(fmt: str, detail: str) -> ImageError:
    return ImageError("image.truncated", f"{fmt.upper()} image is truncated: {detail}")


def _corrupt(fmt: str, detail: str) -> ImageError:
    return ImageError("image.decode_failed", f"{fmt.upper()} header is invalid: {detail}")


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_MAX_EXIF_ENTRIES = 1024


def _exif_orientation(tiff: bytes) -> int:
    """The EXIF orientation tag (1..8) from a TIFF-structured EXIF block; 1 when absent."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(end + "H", tiff, ifd)
    for k in range(min(count, _MAX_EXIF_ENTRIES)):
        pos = ifd + 2 + 12 * k
        if pos + 12 > len(tiff):
            break
        tag, typ = struct.unpack_from(end + "HH", tiff, pos)
        if tag == 0x0112 and typ == 3:
            (value,) = struct.unpack_from(end + "H", tiff, pos + 8)
            return int(value) if 1 <= value <= 8 else 1
    return 1


def _jpeg_header(data: bytes) -> ImageHeader:
    n = len(data)
    i = 2
    sof: tuple[int, int, int, int] | None = None
    orientation = 1
    adobe_transform: int | None = None
    sos_at = -1
    while i < n:
        if data[i] != 0xFF:
            raise _corrupt("jpeg", f"expected a marker at byte {i}")
        if i + 1 >= n:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xD9:
            raise _corrupt("jpeg", "end of image before any scan")
        if i + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2:
            raise _corrupt("jpeg", f"segment length {length} at byte {i}")
        segment = data[i + 4 : i + 2 + length]
        if len(segment) < length - 2:
            break
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00") and orientation == 1:
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe_transform = segment[11]
        elif marker in _JPEG_SOF:
            if len(segment) < 6:
                raise _corrupt("jpeg", "short frame header")
            precision, height, width, components = struct.unpack_from(">BHHB", segment, 0)
            sof = (precision, width, height, components)
        elif marker == 0xDA:
            sos_at = i
            break
        i += 2 + length
    if sof is None:
        if sos_at >= 0:
            raise _corrupt("jpeg", "scan data before any frame header")
        raise _truncated("jpeg", f"no frame header in {n} bytes")
    precision, width, height, components = sof
    if width == 0 or height == 0:
        raise _corrupt("jpeg", f"declared size {width}x{height}")
    if components not in (1, 3, 4):
        raise _corrupt("jpeg", f"{components} colour components")
    truncated = ""
    if sos_at < 0:
        truncated = "no scan data"
    # In entropy-coded data 0xFF is always followed by 0x00 or a restart marker,
    # so FF D9 after the first scan can only be the end-of-image marker.
    elif data.rfind(b"\xff\xd9", sos_at) < 0:
        truncated = "no end-of-image marker"
    return ImageHeader(
        format="jpeg",
        width=width,
        height=height,
        bit_depth=precision,
        grayscale=components == 1,
        cmyk=components == 4 and adobe_transform != 1,
        orientation=orientation,
        truncated=truncated,
    )


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_MAX_PNG_CHUNKS = 10_000


def _png_header(data: bytes) -> ImageHeader:
    n = len(data)
    if n < 33:
        raise _truncated("png", f"{n} bytes, shorter than a PNG header")
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise _corrupt("png", "the first chunk is not IHDR")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, 16
    )
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _corrupt("png", f"declared size {width}x{height}")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise _corrupt("png", f"colour type {colour} with bit depth {depth}")
    if compression or filtering or interlace > 1:
        raise _corrupt("png", "unknown compression, filter or interlace method")
    has_alpha = colour in (4, 6)
    animated = False
    pos, chunks, seen_idat = 33, 0, False
    while pos + 8 <= n and chunks < _MAX_PNG_CHUNKS:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length >= 2**31:
            raise _corrupt("png", f"chunk length {length}")
        if kind == b"IDAT":
            seen_idat = True
            break
        if kind == b"tRNS":
            has_alpha = True
        elif kind == b"acTL":
            animated = True
        elif kind == b"IEND":
            break
        pos += 12 + length
        chunks += 1
    truncated = ""
    if not seen_idat:
        truncated = "no image data"
    elif data.rfind(b"IEND", max(0, n - 4096)) < 0:
        truncated = "no IEND chunk"
    return ImageHeader(
        format="png",
        width=width,
        height=height,
        bit_depth=depth,
        has_alpha=has_alpha,
        grayscale=colour in (0, 4),
        animated=animated,
        truncated=truncated,
    )


def _webp_header(data: bytes) -> ImageHeader:
    n = len(data)
    if n < 30:
        raise _truncated("webp", f"{n} bytes, shorter than a WebP header")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    truncated = f"RIFF declares {riff_size + 8} bytes, got {n}" if riff_size + 8 > n else ""
    kind = data[12:16]
    payload = 20
    if kind == b"VP8 ":
        if data[payload + 3 : payload + 6] != b"\x9d\x01\x2a":
            raise _corrupt("webp", "missing VP8 start code")
        w, h = struct.unpack_from("<HH", data, payload + 6)
        width, height, alpha, animated = w & 0x3FFF, h & 0x3FFF, False, False
    elif kind == b"VP8L":
        if data[payload] != 0x2F:
            raise _corrupt("webp", "missing VP8L signature")
        (bits,) = struct.unpack_from("<I", data, payload + 1)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha, animated = bool((bits >> 28) & 1), False
    elif kind == b"VP8X":
        flags = data[payload]
        width = int.from_bytes(data[payload + 4 : payload + 7], "little") + 1
        height = int.from_bytes(data[payload + 7 : payload + 10], "little") + 1
        alpha, animated = bool(flags & 0x10), bool(flags & 0x02)
    else:
        raise _corrupt("webp", f"unknown first chunk {kind!r}")
    if width == 0 or height == 0:
        raise _corrupt("webp", f"declared size {width}x{height}")
    return ImageHeader(
        format="webp",
        width=width,
        height=height,
        has_alpha=alpha,
        animated=animated,
        truncated=truncated,
    )


def _bmp_header(data: bytes) -> ImageHeader:
    n = len(data)
    (info_size,) = struct.unpack_from("<I", data, 14)
    if n < 14 + min(info_size, 40):
        raise _truncated("bmp", f"{n} bytes, shorter than its header")
    (offset,) = struct.unpack_from("<I", data, 10)
    compression = 0
    alpha_mask = 0
    if info_size == 12:
        width, height, _planes, bpp = struct.unpack_from("<HHHH", data, 18)
    else:
        width, height, _planes, bpp = struct.unpack_from("<iiHH", data, 18)
        if info_size >= 40:
            (compression,) = struct.unpack_from("<I", data, 30)
        if info_size >= 56 and n >= 58:
            (alpha_mask,) = struct.unpack_from("<I", data, 54)
    height = abs(height)  # negative height: rows stored top-down
    if width <= 0 or height == 0:
        raise _corrupt("bmp", f"declared size {width}x{height}")
    if bpp not in (1, 4, 8, 16, 24, 32):
        raise _corrupt("bmp", f"{bpp} bits per pixel")
    if compression in (4, 5):
        raise ImageError(
            "image.unsupported_format",
            "unsupported image format: detected BMP wrapping JPEG/PNG data; "
            "accepted formats are JPEG, PNG, WebP and BMP",
        )
    truncated = ""
    if compression in (0, 3, 6):  # uncompressed: the pixel array size is known
        needed = offset + ((width * bpp + 31) // 32) * 4 * height
        if needed > n:
            truncated = f"pixel data needs {needed} bytes, got {n}"
    return ImageHeader(
        format="bmp",
        width=width,
        height=height,
        has_alpha=bpp == 32 and (alpha_mask != 0 or info_size >= 108),
        truncated=truncated,
    )


_HEADER_READERS = {
    "jpeg": _jpeg_header,
    "png": _png_header,
    "webp": _webp_header,
    "bmp": _bmp_header,
}


def read_header(data: bytes, fmt: str | None = None) -> ImageHeader:
    """Parse format, size and colour facts from the header without decoding pixels.

    A file cut after its header still parses (``truncated`` says why it looks
    incomplete), so that size limits are checked before completeness. Raises
    :class:`ImageError` (``image.empty``, ``image.unsupported_format``,
    ``image.truncated`` when the header itself is cut, or ``image.decode_failed``)
    and nothing else.
    """
    fmt = fmt or sniff_format(data)
    try:
        return _HEADER_READERS[fmt](data)
    except (struct.error, IndexError, ValueError) as exc:
        # Reading past the end of a too-short buffer.
        raise _truncated(fmt, f"header cut short ({exc})") from None


# --------------------------------------------------------------------------- decoding

_opencv_quiet = threading.Event()


def _quiet_opencv() -> None:
    """Keep libjpeg/libpng warnings about bad input out of the logs (we report them ourselves)."""
    if not _opencv_quiet.is_set():
        with contextlib.suppress(AttributeError):  # builds without the logging module
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        _opencv_quiet.set()


def _reduction(header: ImageHeader, min_side: int | None) -> int:
    """The largest JPEG DCT scaling (2, 4, 8) that keeps the short side >= ``min_side``."""
    if header.format != "jpeg" or not min_side or header.cmyk:
        return 1
    short = min(header.width, header.height)
    for factor in (8, 4, 2):
        if short // factor >= min_side:
            return factor
    return 1


_Samples = npt.NDArray[Any]  # uint8 or uint16 samples, as OpenCV returns them

_REDUCED_RGB = {1: cv2.IMREAD_COLOR_RGB, 2: cv2.IMREAD_COLOR_RGB | 16}
_REDUCED_RGB[4] = cv2.IMREAD_COLOR_RGB | 32
_REDUCED_RGB[8] = cv2.IMREAD_COLOR_RGB | 64


def _to_uint8(pixels: _Samples) -> tuple[_Samples, bool]:
    if pixels.dtype == np.uint8:
        return pixels, False
    if pixels.dtype == np.uint16:
        return cv2.convertScaleAbs(pixels, alpha=255.0 / 65535.0), True
    raise ImageError("image.decode_failed", f"decoded sample type {pixels.dtype} is not supported")


def _composite_on_white(bgra: _Samples) -> tuple[npt.NDArray[np.uint8], bool]:
    """BGR(A) uint8/uint16 -> RGB uint8, compositing any transparency on white."""
    alpha = bgra[..., 3]
    top = np.iinfo(bgra.dtype).max
    transparent = bool((alpha != top).any())
    if not transparent:
        rgb, _ = _to_uint8(bgra[..., 2::-1])
        return np.ascontiguousarray(rgb, dtype=np.uint8), False
    out = np.empty((*bgra.shape[:2], 3), dtype=np.uint8)
    # In bands of rows, so a 40-megapixel picture needs tens of MB of float scratch, not GBs.
    for y in range(0, bgra.shape[0], _COMPOSITE_ROWS):
        band = bgra[y : y + _COMPOSITE_ROWS]
        a = band[..., 3:4].astype(np.float32) * (1.0 / top)
        colour = band[..., 2::-1].astype(np.float32) * (255.0 / top)
        mixed = colour * a + 255.0 * (1.0 - a) + 0.5
        np.clip(mixed, 0, 255, out=mixed)
        out[y : y + _COMPOSITE_ROWS] = mixed
    return out, True


def _is_grayscale(rgb: npt.NDArray[np.uint8]) -> bool:
    sample = rgb[::7, ::7].astype(np.int16)
    return bool(
        np.abs(sample[..., 0] - sample[..., 1]).max(initial=0) <= 2
        and np.abs(sample[..., 1] - sample[..., 2]).max(initial=0) <= 2
    )


def decode_image(data: bytes, limits: ImageLimits, *, min_side: int | None = None) -> DecodedImage:
    """Validate and decode ``data`` into ``(H, W, 3)`` uint8 RGB.

    ``min_side`` is the short side the caller will resize to (the model's
    ``resize_short_side``): JPEGs at least twice that size are decoded reduced
    by 2, 4 or 8, and images below it are flagged ``low_resolution``.

    Raises :class:`ImageError` and nothing else.
    """
    # Size and pixel limits are checked on the header, before OpenCV allocates.
    header = _checked_header(data, limits)
    _quiet_opencv()
    factor = _reduction(header, min_side)
    # Alpha needs the 4th channel; everything else decodes straight to RGB
    # (OpenCV converts grayscale, CMYK and 16-bit and applies EXIF orientation).
    mode = cv2.IMREAD_UNCHANGED if header.has_alpha else _REDUCED_RGB[factor]
    decoded = _imdecode(data, header, mode)
    pixels, high_depth, had_alpha = _to_rgb(np.asarray(decoded), header, mode)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageError(
            "image.decode_failed", f"decoded to an unexpected array {pixels.dtype}{pixels.shape}"
        )
    rgb = np.ascontiguousarray(pixels, dtype=np.uint8)
    if factor == 1:
        height, width = rgb.shape[:2]  # exact, whatever orientation the decoder applied
    else:
        width, height = header.display_size
    flags = _quality_flags(
        rgb, header, width, height, min_side,
        high_depth=high_depth, had_alpha=had_alpha, rotated_by_decoder=mode != cv2.IMREAD_UNCHANGED,
    )  # fmt: skip
    return DecodedImage(
        pixels=rgb,
        format=header.format,
        width=width,
        height=height,
        flags=flags,
        scale=factor,
    )


def _checked_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    """The header of ``data``, once its bytes, pixels and completeness are within limits."""
    if not data:
        raise ImageError("image.empty", "image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(
            "image.too_large",
            f"image is {len(data)} bytes, over max_image_bytes={limits.max_bytes} "
            "(VITRINE_MAX_IMAGE_BYTES)",
        )
    header = read_header(data)
    if header.pixels > limits.max_pixels:
        raise ImageError(
            "image.too_large",
            f"image is {header.width}x{header.height} pixels, over "
            f"max_image_pixels={limits.max_pixels} (VITRINE_MAX_IMAGE_PIXELS)",
        )
    if header.truncated:
        raise _truncated(header.format, header.truncated)
    return header


def _imdecode(data: bytes, header: ImageHeader, mode: int) -> Any:
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(buffer, mode)
    except cv2.error as exc:
        raise ImageError(
            "image.decode_failed",
            f"OpenCV could not decode the {header.format.upper()} data: {exc.err or exc}",
        ) from None
    if decoded is None or decoded.size == 0:
        raise ImageError(
            "image.decode_failed",
            f"OpenCV could not decode the {header.format.upper()} data "
            f"({header.width}x{header.height}, {len(data)} bytes)",
        )
    return decoded


def _to_rgb(pixels: _Samples, header: ImageHeader, mode: int) -> tuple[_Samples, bool, bool]:
    """RGB pixels of an unchanged-mode decode; (pixels, high bit depth, had alpha)."""
    high_depth = header.bit_depth > 8
    had_alpha = False
    if mode != cv2.IMREAD_UNCHANGED:
        return pixels, high_depth, had_alpha
    if pixels.ndim == 2:
        pixels, high = _to_uint8(pixels)
        high_depth |= high
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    elif pixels.shape[2] == 4 and header.format == "bmp" and not pixels[..., 3].any():
        # 32-bit BMPs often leave the 4th byte zero (XRGB): it is padding, not alpha.
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    elif pixels.shape[2] == 4:
        high_depth |= pixels.dtype != np.uint8
        pixels, had_alpha = _composite_on_white(pixels)
    else:
        pixels, high = _to_uint8(pixels)
        high_depth |= high
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels, high_depth, had_alpha


def _quality_flags(
    rgb: _Samples,
    header: ImageHeader,
    width: int,
    height: int,
    min_side: int | None,
    *,
    high_depth: bool,
    had_alpha: bool,
    rotated_by_decoder: bool,
) -> tuple[str, ...]:
    short, long = min(width, height), max(width, height)
    flags: list[str] = []
    if short < (min_side or _DEFAULT_MIN_SIDE):
        flags.append("low_resolution")
    if header.grayscale or _is_grayscale(rgb):
        flags.append("grayscale")
    if had_alpha:
        flags.append("had_alpha")
    if high_depth:
        flags.append("high_bit_depth")
    if header.cmyk:
        flags.append("cmyk")
    if header.orientation != 1 and rotated_by_decoder:
        flags.append("exif_rotated")
    if header.animated:
        flags.append("animated")
    if long > _EXTREME_ASPECT * short:
        flags.append("extreme_aspect_ratio")
    return tuple(flags)
