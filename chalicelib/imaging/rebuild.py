"""The stored original, rebuilt from parts known to be safe (:mod:`.allowlist`), never
scrubbed: the compressed image data is copied byte for byte (decoded pixels identical)
with the rendering parts and the allowlisted EXIF; everything else is left behind.

Each rebuild walks its container once (:mod:`.containers`): linear in the input's size,
nothing inflated, no search over metadata. HEIC/AVIF are rewritten in place by
:mod:`.heif`.
"""

from __future__ import annotations

import struct
import zlib

from chalicelib.imaging import allowlist
from chalicelib.imaging.containers import (
    EOI,
    Truncated,
    gif_blocks,
    gif_screen_end,
    jpeg_segments,
    png_chunks,
    riff_chunks,
)


class _Pieces:
    """The rebuilt bytes, gathered as views of the input's kept parts (no copy) and new
    bytes; :meth:`result` is the input object itself when every byte was kept in order,
    so an image with nothing to drop is not held twice."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.parts: list[bytes | memoryview] = []
        self.next = 0
        self.verbatim = True

    def copy(self, start: int, end: int) -> None:
        """Keep ``data[start:end]`` as it is."""
        self.verbatim = self.verbatim and start == self.next
        self.parts.append(self.view[start:end])
        self.next = end

    def add(self, new: bytes) -> None:
        """Put ``new`` bytes (a part re-serialised) next."""
        self.verbatim = False
        self.parts.append(new)

    def result(self) -> bytes:
        """The rebuilt bytes."""
        if self.verbatim and self.next == len(self.data):
            return self.data
        return b"".join(self.parts)


def rebuild(data: bytes, content_type: str) -> bytes:
    """``data`` (of the sniffed ``content_type``) rebuilt from its allowlisted parts.

    A container cut short is rebuilt up to the cut (the decoder then refuses it like the
    input). HEIC/HEIF/AVIF: see :func:`chalicelib.imaging.heif.rewrite`.
    """
    if content_type == "image/jpeg":
        return rebuild_jpeg(data)
    if content_type == "image/png":
        return rebuild_png(data)
    if content_type == "image/webp":
        return rebuild_webp(data)
    if content_type == "image/gif":
        return rebuild_gif(data)
    from chalicelib.imaging.heif import rewrite

    return rewrite(data)


def rebuild_jpeg(data: bytes) -> bytes:
    """SOI, APP0 JFIF (its fixed fields, no thumbnail), a re-serialised APP1 EXIF (first
    one only), APP2 ICC_PROFILE, APP14 Adobe (its fixed fields), the tables, frame
    headers and every scan (with the tables between progressive scans), EOI; nothing
    after EOI."""
    out = _Pieces(data)
    exif_done = False
    for segment in jpeg_segments(data):
        marker = segment.marker
        if marker in allowlist.JPEG_MARKERS or segment.start == 0:  # SOI
            out.copy(segment.start, segment.end)
            if marker == EOI:
                break
            continue
        if not 0xE0 <= marker <= 0xEF:
            continue
        payload = data[segment.payload : segment.end]
        if (marker, bytes(payload[:6])) == allowlist.JPEG_EXIF:
            if exif_done:
                continue
            exif_done = True
            cleaned = allowlist.clean_exif(payload)
            if cleaned is not None and len(cleaned) + 8 <= 0xFFFF:
                body = allowlist.JPEG_EXIF[1] + cleaned
                out.add(b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)
            continue
        for (app, prefix), _ in allowlist.JPEG_APP.items():
            if marker == app and payload[: len(prefix)] == prefix:
                fixed = allowlist.JPEG_APP_FIXED.get(marker)
                if marker == 0xE2 and payload[13:14] == b"\x01":  # a one-chunk ICC profile
                    profile = allowlist.icc_profile(payload[14:])
                    if profile is not None and len(profile) + 14 == len(payload):
                        out.copy(segment.start, segment.end)
                    elif profile is not None:
                        body = payload[:14] + profile
                        out.add(b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body)
                elif fixed is None or (
                    len(payload) == fixed and (marker != 0xE0 or payload[12:14] == b"\x00\x00")
                ):
                    out.copy(segment.start, segment.end)
                elif len(payload) >= fixed:
                    body = payload[:fixed]
                    if marker == 0xE0:
                        body = body[:12] + b"\x00\x00"  # no thumbnail
                    out.add(bytes([0xFF, marker]) + struct.pack(">H", fixed + 2) + body)
                break
    return out.result()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def rebuild_png(data: bytes) -> bytes:
    """The signature and the allowlisted chunks up to IEND (copied with their CRCs; a
    fixed-size chunk cut to its size, ``iCCP`` renamed), an ``eXIf`` before the first
    IDAT re-serialised; nothing after IEND."""
    out = _Pieces(data)
    out.copy(0, 8)
    seen_idat = False
    exif_done = False
    for chunk in png_chunks(data):
        body = data[chunk.body : chunk.body + chunk.length]
        fixed = allowlist.PNG_FIXED.get(chunk.kind)
        if fixed is not None and chunk.length > fixed:
            out.add(_png_chunk(chunk.kind, body[:fixed]))
        elif chunk.kind == b"iCCP" and not body.startswith(allowlist.PNG_ICC_NAME + b"\x00"):
            _, _, profile = body.partition(b"\x00")  # the name goes, the profile stays
            out.add(_png_chunk(chunk.kind, allowlist.PNG_ICC_NAME + b"\x00" + profile))
        elif chunk.kind in allowlist.PNG_CHUNKS:
            seen_idat = seen_idat or chunk.kind == b"IDAT"
            out.copy(chunk.start, chunk.end)
        elif chunk.kind == allowlist.PNG_EXIF and not seen_idat and not exif_done:
            exif_done = True
            cleaned = allowlist.clean_exif(data[chunk.body : chunk.body + chunk.length])
            if cleaned is not None:
                out.add(_png_chunk(allowlist.PNG_EXIF, cleaned))
    return out.result()


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


#: VP8X flags: ICC profile, alpha, EXIF, XMP, animation.
_ICC, _ALPHA, _EXIF, _XMP, _ANIMATION = 0x20, 0x10, 0x08, 0x04, 0x02


def rebuild_webp(data: bytes) -> bytes:
    """``RIFF``/``WEBP`` with the allowlisted chunks (inside ``ANMF``, only the frame's
    bitstream chunks), a re-serialised ``EXIF``, the ``VP8X`` flags recomputed from what
    is kept and the RIFF size recomputed; nothing after the RIFF body."""
    riff_end = 8 + struct.unpack_from("<I", data, 4)[0]
    if riff_end > len(data):
        raise Truncated("RIFF body")
    chunks: list[bytes] = []
    vp8x_index: int | None = None
    flags = 0
    for chunk in riff_chunks(data, 12, riff_end):
        body = data[chunk.body : chunk.body + chunk.length]
        if chunk.kind == allowlist.WEBP_EXIF:
            if flags & _EXIF:
                continue
            cleaned = allowlist.clean_exif(body)
            if cleaned is None:
                continue
            flags |= _EXIF
            chunks.append(_riff_chunk(chunk.kind, cleaned))
            continue
        if chunk.kind not in allowlist.WEBP_CHUNKS:
            continue
        if chunk.kind == b"VP8X":
            if vp8x_index is not None or chunk.length < 10:
                continue
            vp8x_index = len(chunks)
            flags |= body[0] & (_ALPHA | _ANIMATION)
        elif chunk.kind == b"ICCP":
            profile = allowlist.icc_profile(body)
            if flags & _ICC or profile is None:
                continue
            body = profile
            flags |= _ICC
        elif chunk.kind == b"ANMF":
            frame = [body[:16]]
            for sub in riff_chunks(body, 16, len(body)):
                if sub.kind in allowlist.WEBP_FRAME_CHUNKS:
                    frame.append(body[sub.start : sub.end])
            body = b"".join(frame)
        chunks.append(_riff_chunk(chunk.kind, body))
    if vp8x_index is not None:
        vp8x = bytearray(chunks[vp8x_index])
        vp8x[8] = flags
        vp8x[9:12] = b"\x00\x00\x00"
        chunks[vp8x_index] = bytes(vp8x)
    else:  # a simple WebP has no place for metadata
        chunks = [c for c in chunks if c[:4] in (b"VP8 ", b"VP8L", b"ALPH")]
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rebuild_gif(data: bytes) -> bytes:
    """Header, logical screen, global colour table, every image (descriptor, local colour
    table, LZW data), graphic control extensions, the NETSCAPE2.0/ANIMEXTS1.0 loop
    extension, the trailer; no comment, plain text or other application extension,
    nothing after the trailer."""
    out = _Pieces(data)
    out.copy(0, min(gif_screen_end(data), len(data)))
    for block in gif_blocks(data):
        if block.kind in (b"image", b"trailer"):
            out.copy(block.start, block.end)
            continue
        first = data[block.start + 2 : block.end]  # the first sub-block, size byte first
        if (
            block.label == allowlist.GIF_GRAPHIC_CONTROL
            and first[:1] == b"\x04"
            and len(first) >= 5
        ):
            gce = b"\x21\xf9\x04" + first[1:5] + b"\x00"  # only its 4 bytes
            if data[block.start : block.end] == gce:
                out.copy(block.start, block.end)
            else:
                out.add(gce)
        elif (
            block.label == 0xFF
            and first[:1] == b"\x0b"
            and first[1:12] in allowlist.GIF_APPLICATIONS
        ):
            loop = first[12:16]  # sub-block 03 01 <count, 2 bytes LE>
            if loop[:2] == b"\x03\x01" and len(loop) == 4:
                extension = b"\x21\xff" + first[:12] + loop + b"\x00"
                if data[block.start : block.end] == extension:
                    out.copy(block.start, block.end)
                else:
                    out.add(extension)
    return out.result()
