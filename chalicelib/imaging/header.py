"""What an image's header says, read from the rebuilt bytes without decoding a pixel:
stored size, frames, EXIF orientation, and what the decoder will make of it (Pillow
mode, progressive JPEG, PNG palette transparency), for :mod:`.budget`.

JPEG, PNG, GIF and WebP headers are read here from the container parts (Pillow's WebP
opener allocates the whole canvas, twice, on open; its PNG ``getexif()`` would decode the
pixels to find an ``eXIf`` after them); HEIC/HEIF/AVIF by pillow-heif's opener, which
reads boxes only.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from chalicelib.imaging.containers import (
    SOS,
    gif_blocks,
    jpeg_segments,
    png_chunks,
    riff_chunks,
)
from chalicelib.imaging.decode import exif_orientation, orientation_of, pillow

#: JPEG start-of-frame markers, and the progressive ones among them.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
#: PNG colour type -> Pillow mode for 8 bits per sample (see :func:`_png_mode`).
_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


@dataclass(frozen=True)
class Header:
    """An image's header.

    Attributes:
        width, height: stored pixels (before orientation); for GIF the canvas.
        frames: frames (1 for a still).
        orientation: EXIF orientation 1-8 (1 when none).
        mode: the Pillow mode the decoder produces (``1``, ``L``, ``LA``, ``P``, ``RGB``,
            ``RGBA``, ``CMYK``, ``I;16``, ...).
        converts_to_rgba: a palette with transparency (renditions convert it to RGBA).
        progressive: a progressive JPEG (libjpeg holds every coefficient).
        samples: a JPEG's samples per pixel over its components, from their sampling
            factors (3 for 4:4:4 colour, 1.5 for 4:2:0, 1 for grey, 4 for CMYK).
    """

    width: int
    height: int
    frames: int = 1
    orientation: int = 1
    mode: str = "RGB"
    converts_to_rgba: bool = False
    progressive: bool = False
    samples: float = 3.0


def read_header(data: bytes, content_type: str) -> Header:
    """The :class:`Header` of ``data`` (rebuilt bytes of the sniffed ``content_type``).

    Raises:
        ValueError, struct.error, OSError: not a readable header (the caller's 415).
    """
    if content_type == "image/jpeg":
        return _jpeg(data)
    if content_type == "image/png":
        return _png(data)
    if content_type == "image/gif":
        return _gif(data)
    if content_type == "image/webp":
        return _webp(data)
    return _heif(data, content_type)


def _jpeg(data: bytes) -> Header:
    orientation = 1
    for segment in jpeg_segments(data):
        if segment.marker == 0xE1:
            orientation = exif_orientation(data[segment.payload : segment.end])
        elif segment.marker in _SOF:
            _, height, width, components = struct.unpack_from(">BHHB", data, segment.payload)
            mode = {1: "L", 3: "RGB", 4: "CMYK"}.get(components)
            factors = data[segment.payload + 6 : segment.payload + 6 + 3 * components]
            if mode is None or len(factors) < 3 * components:
                raise ValueError("unsupported JPEG components")
            sampling = [
                (factors[3 * i + 1] >> 4, factors[3 * i + 1] & 15) for i in range(components)
            ]
            largest = max(h for h, _ in sampling) * max(v for _, v in sampling)
            return Header(
                width,
                height,
                orientation=orientation,
                mode=mode,
                progressive=segment.marker in _PROGRESSIVE,
                samples=sum(h * v for h, v in sampling) / max(largest, 1),
            )
        elif segment.marker == SOS:
            break
    raise ValueError("no JPEG frame header")


def _png_mode(colour_type: int, depth: int) -> str:
    if colour_type == 0 and depth == 1:
        return "1"
    if colour_type == 0 and depth == 16:
        return "I;16"
    mode = _PNG_MODES.get(colour_type)
    if mode is None:
        raise ValueError("bad PNG colour type")
    return mode


def _png(data: bytes) -> Header:
    chunks = png_chunks(data)
    first = next(chunks, None)
    if first is None or first.kind != b"IHDR" or first.length < 13:
        raise ValueError("no IHDR")
    width, height, depth, colour_type = struct.unpack_from(">IIBB", data, first.body)
    mode = _png_mode(colour_type, depth)
    frames, orientation, transparency = 1, 1, False
    for chunk in chunks:
        if chunk.kind == b"acTL" and chunk.length >= 4:
            frames = struct.unpack_from(">I", data, chunk.body)[0]
        elif chunk.kind == b"eXIf":
            orientation = exif_orientation(data[chunk.body : chunk.body + chunk.length])
        elif chunk.kind == b"tRNS":
            transparency = True
    return Header(
        width,
        height,
        frames,
        orientation,
        mode=mode,
        converts_to_rgba=mode == "P" and transparency,
    )


def _gif(data: bytes) -> Header:
    """Canvas (grown by any frame reaching past it, as Pillow does) and frame count."""
    width, height = struct.unpack_from("<HH", data, 6)
    frames = 0
    for block in gif_blocks(data):
        if block.kind == b"image" and block.start + 9 <= len(data):
            left, top, frame_w, frame_h = struct.unpack_from("<4H", data, block.start + 1)
            width, height = max(width, left + frame_w), max(height, top + frame_h)
            frames += 1
    return Header(width, height, max(frames, 1), mode="P")


def _u24le(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 3], "little")


def _webp(data: bytes) -> Header:
    """Size, frames (``ANMF`` chunks) and EXIF orientation of a WebP, from its chunks."""
    chunks = list(riff_chunks(data, 12, len(data)))
    if not chunks:
        raise ValueError("no chunk")
    first = chunks[0]
    offset = first.body
    orientation, frames = 1, 1
    if first.kind == b"VP8 ":
        if data[offset + 3 : offset + 6] != b"\x9d\x01\x2a":
            raise ValueError("no VP8 start code")
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, offset + 6))
    elif first.kind == b"VP8L":
        if data[offset] != 0x2F:
            raise ValueError("no VP8L signature")
        bits = struct.unpack_from("<I", data, offset + 1)[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif first.kind == b"VP8X":
        width, height = _u24le(data, offset + 4) + 1, _u24le(data, offset + 7) + 1
        if data[offset] & 0x02:
            frames = sum(1 for chunk in chunks if chunk.kind == b"ANMF")
        for chunk in chunks:
            if chunk.kind == b"EXIF":
                orientation = exif_orientation(data[chunk.body : chunk.body + chunk.length])
    else:
        raise ValueError("not a WebP bitstream")
    return Header(width, height, frames, orientation, mode="RGBA")


def _heif(data: bytes, content_type: str) -> Header:
    """HEIC/HEIF/AVIF: HEIC/HEIF one image (bursts and alternatives are not frames), an
    AVIF sequence its frames; the decoders apply ``irot``/``imir`` themselves."""
    from chalicelib.imaging.decode import pillow_format

    image_module = pillow()
    with image_module.open(io.BytesIO(data), formats=[pillow_format(content_type)]) as image:
        width, height = image.size
        frames = int(getattr(image, "n_frames", 1)) if content_type == "image/avif" else 1
        return Header(width, height, frames, orientation_of(image.getexif()), mode=image.mode)
