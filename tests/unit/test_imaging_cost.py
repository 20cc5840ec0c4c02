"""Linear cost of metadata: 20 KB of XMP (JPEG APP1, PNG iTXt, WebP XMP chunk, GIF
application extension) or of bytes after the end marker, against 8 times as much, in
one test: the time ratio stays far under the 64 a quadratic walk would show (generously:
under 24, each side the best of three runs)."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from chalicelib.imaging import ImageLimits, probe, process

LIMITS = ImageLimits(50 << 20, 50_000_000, 256 << 20, 300, (16,))
KB = 1024


def _xmp(size: int) -> bytes:
    """An XMP-looking text of ``size`` bytes, full of property names and 0xFF-free."""
    unit = b'<rdf:li exif:GPSLatitude="52,31N" photoshop:City="Berlin"/>'
    return (unit * (size // len(unit) + 1))[:size]


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((32, 24)).convert("RGB")
    image.save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def jpeg_xmp(size: int) -> bytes:
    data = _image("JPEG")
    segment = b"http://ns.adobe.com/xap/1.0/\x00" + _xmp(20 * KB)
    one = b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment
    return data[:2] + one * (size // (20 * KB)) + data[2:]


def jpeg_trailer(size: int) -> bytes:
    return _image("JPEG") + (b"\xff\xd8\xff\xe1Exif\x00\x00" + _xmp(100)) * (size // 112)


def png_itxt(size: int) -> bytes:
    data = _image("PNG")
    body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + _xmp(size)
    chunk = (
        struct.pack(">I", len(body))
        + b"iTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    )
    return data[:33] + chunk + data[33:]


def webp_xmp(size: int) -> bytes:
    data = _image("WEBP")
    body = data[12:] + b"XMP " + struct.pack("<I", size) + _xmp(size)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def gif_xmp(size: int) -> bytes:
    data = _image("GIF")
    blocks = b"".join(b"\xff" + _xmp(255) for _ in range(size // 255)) + b"\x00"
    return data[:-1] + b"\x21\xff\x0bXMP DataXMP" + blocks + b"\x3b"


CASES: dict[str, Callable[[int], bytes]] = {
    "jpeg-xmp": jpeg_xmp,
    "jpeg-trailer": jpeg_trailer,
    "png-itxt": png_itxt,
    "webp-xmp": webp_xmp,
    "gif-xmp": gif_xmp,
}


def _best_of_three(data: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        probe(data, LIMITS)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("case", sorted(CASES))
def test_metadata_costs_linear_time(case: str) -> None:
    small, large = CASES[case](20 * KB), CASES[case](160 * KB)
    assert len(large) > 7 * len(small) - 8 * KB
    process(small, LIMITS)  # every step accepts it: the metadata is just left behind
    ratio = _best_of_three(large) / _best_of_three(small)
    print(f"{case}: 8x the metadata costs {ratio:.1f}x the time")
    assert ratio < 24, ratio
