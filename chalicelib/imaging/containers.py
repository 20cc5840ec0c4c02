"""Splitting containers into their parts: JPEG segments, PNG chunks, RIFF chunks, GIF
blocks, ISOBMFF boxes, and sniffing the type from the magic bytes.

Every length read here is checked against the input before it is used, and every loop
advances by at least one byte per step, so each walk is linear in the input's size and
never reads past its end. Nothing is decompressed. A JPEG, PNG, RIFF or GIF part that
does not fit in the input raises :class:`Truncated` (a truncated image is refused, like
one its decoder cannot finish); an ISOBMFF box that does not fit ends the walk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset({b"mif1", b"msf1"})

#: JPEG markers with no length field: TEM, RST0-7 (SOI and EOI are handled by name).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
SOI, EOI, SOS = 0xD8, 0xD9, 0xDA


class Truncated(ValueError):
    """A part's declared length runs past the end of the input."""


def sniff(data: bytes) -> str | None:
    """The content type the magic bytes of ``data`` name (``image/jpeg``, ``image/png``,
    ``image/gif``, ``image/webp``, ``image/heic``, ``image/heif``, ``image/avif``), or
    None for anything else. Reads at most the first 4 KiB."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and len(data) >= 16:
        box_size = min(struct.unpack(">I", data[:4])[0], len(data), 4096)
        major = data[8:12]
        compatible = {data[i : i + 4] for i in range(16, box_size - 3, 4)}
        if major in AVIF_BRANDS:
            return "image/avif"
        if major in HEIC_BRANDS:
            return "image/heic"
        if major in HEIF_BRANDS:
            if compatible & AVIF_BRANDS:
                return "image/avif"
            if compatible & HEIC_BRANDS:
                return "image/heic"
            return "image/heif"
    return None


class Segment(NamedTuple):
    """One JPEG marker segment: ``marker`` (the byte after 0xFF), ``start``/``end`` the
    offsets of the whole segment in the file (marker included; for SOS, the
    entropy-coded data that follows it is included too), ``payload`` the offset of the
    bytes after the length field (``end`` for standalone markers)."""

    marker: int
    start: int
    end: int
    payload: int


def jpeg_segments(data: bytes) -> Iterator[Segment]:
    """The segments of a JPEG from SOI through EOI, in order (fill bytes and bytes that are
    not a marker skipped, as libjpeg does). An SOS segment spans its entropy-coded data
    up to the next marker that is not a stuffed ``FF00`` or a restart marker. Stops at
    EOI or at the end of the data.

    Raises:
        Truncated: a segment's length runs past the end.
    """
    if data[:2] != b"\xff\xd8":
        return
    yield Segment(SOI, 0, 2, 2)
    pos = 2
    size = len(data)
    while pos + 1 < size:
        if data[pos] != 0xFF:  # not a marker where one must be: skip to the next
            pos = data.find(b"\xff", pos)
            if pos == -1:
                return
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == EOI:
            yield Segment(EOI, pos, pos + 2, pos + 2)
            return
        if marker in _STANDALONE or marker == SOI:
            yield Segment(marker, pos, pos + 2, pos + 2)
            pos += 2
            continue
        if pos + 4 > size:
            raise Truncated("JPEG segment header")
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > size:
            raise Truncated("JPEG segment")
        if marker == SOS:
            end = _entropy_end(data, end)
        yield Segment(marker, pos, end, pos + 4)
        pos = end


def _entropy_end(data: bytes, pos: int) -> int:
    """Offset of the first marker after entropy-coded data starting at ``pos`` (or the
    end of the data): 0xFF followed by 0x00 (stuffing), 0xD0-0xD7 (restart) or 0xFF
    (fill, then look again) is data."""
    size = len(data)
    while True:
        found = data.find(b"\xff", pos)
        if found == -1 or found + 1 >= size:
            return size
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos = found + 2
        elif following == 0xFF:
            pos = found + 1
        else:
            return found


class Chunk(NamedTuple):
    """One PNG or RIFF chunk: its four-byte ``kind``, ``start``/``end`` offsets of the
    whole chunk (header, body, CRC or pad byte), and of its body
    (``body``, ``body + length``)."""

    kind: bytes
    start: int
    end: int
    body: int
    length: int


def png_chunks(data: bytes) -> Iterator[Chunk]:
    """The chunks of a PNG after its signature, up to and including ``IEND``.

    Raises:
        Truncated: a chunk's declared length runs past the end of the data.
    """
    pos = 8
    size = len(data)
    while pos + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > size:
            raise Truncated("PNG chunk")
        yield Chunk(kind, pos, end, pos + 8, length)
        if kind == b"IEND":
            return
        pos = end


def riff_chunks(data: bytes, start: int, stop: int) -> Iterator[Chunk]:
    """The RIFF chunks in ``data[start:stop]`` (``end`` includes the pad byte of an odd
    length when present).

    Raises:
        Truncated: a chunk runs past ``stop`` or the end of the data.
    """
    pos = start
    stop = min(stop, len(data))
    while pos + 8 <= stop:
        kind = data[pos : pos + 4]
        length = struct.unpack_from("<I", data, pos + 4)[0]
        body_end = pos + 8 + length
        if body_end > stop:
            raise Truncated("RIFF chunk")
        end = min(body_end + (length & 1), stop)
        yield Chunk(kind, pos, end, pos + 8, length)
        pos = end


class GifBlock(NamedTuple):
    """One GIF block after the logical screen: ``kind`` is ``b"image"`` (descriptor,
    local colour table, LZW data), ``b"ext"`` (an extension; ``label`` its label byte)
    or ``b"trailer"``; ``start``/``end`` its offsets."""

    kind: bytes
    label: int
    start: int
    end: int


def gif_screen_end(data: bytes) -> int:
    """Offset just after the header, logical screen descriptor and global colour table
    (may exceed ``len(data)`` for a truncated file)."""
    if len(data) < 13:
        return len(data) + 1
    flags = data[10]
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def gif_blocks(data: bytes) -> Iterator[GifBlock]:
    """The blocks of a GIF after its global colour table, up to the trailer (``0x3B``),
    data that is not a block, or the end of the data. LZW data is skipped by its
    sub-block lengths, never decompressed.

    Raises:
        Truncated: a block is cut before its terminator.
    """
    pos = gif_screen_end(data)
    size = len(data)
    while pos < size:
        introducer = data[pos]
        if introducer == 0x2C:  # image descriptor
            if pos + 10 > size:
                raise Truncated("GIF image descriptor")
            local = data[pos + 9]
            table = 3 << ((local & 7) + 1) if local & 0x80 else 0
            end = _skip_sub_blocks(data, pos + 10 + table + 1)
            yield GifBlock(b"image", 0x2C, pos, end)
            pos = end
        elif introducer == 0x21:  # extension
            if pos + 2 > size:
                raise Truncated("GIF extension")
            end = _skip_sub_blocks(data, pos + 2)
            yield GifBlock(b"ext", data[pos + 1], pos, end)
            pos = end
        elif introducer == 0x3B:
            yield GifBlock(b"trailer", 0x3B, pos, pos + 1)
            return
        else:
            return


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Offset after the zero-length sub-block that ends the data starting at ``pos``.

    Raises:
        Truncated: the data ends first.
    """
    size = len(data)
    while pos < size:
        length = data[pos]
        pos += 1 + length
        if length == 0:
            if pos > size:
                break
            return pos
    raise Truncated("GIF sub-blocks")


class Box(NamedTuple):
    """One ISOBMFF box: ``kind``, ``start``/``end`` offsets of the whole box, ``body`` the
    offset after its header."""

    kind: bytes
    start: int
    end: int
    body: int


def boxes(data: bytes, start: int, stop: int) -> Iterator[Box]:
    """The ISOBMFF boxes in ``data[start:stop]``; stops at a box that does not fit."""
    pos = start
    stop = min(stop, len(data))
    while pos + 8 <= stop:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > stop:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = stop - pos
        if size < header or pos + size > stop:
            return
        yield Box(kind, pos, pos + size, pos + header)
        pos += size
