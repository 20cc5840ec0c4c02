"""Fuzzing as a standing test: Hypothesis mutates real container structures (the seeds
in ``tests/fuzz/corpus/``, split into their JPEG segments, PNG/RIFF chunks, GIF blocks)
and drives :func:`chalicelib.imaging.probe` and :func:`chalicelib.imaging.process`.

Mutations: insert a part carrying a unique location marker (a part of a kind the
allowlist drops: XMP, EXIF GPS, comments, text chunks, unknown chunks, application
extensions), drop, duplicate or swap parts, overwrite a byte, cut the file, append bytes.
Properties: only the domain errors escape; an accepted image's stored original holds no
marker (raw, UTF-8, UTF-16) outside the compressed image data, decodes, and has the
input's pixels whenever Pillow decodes the input itself cleanly. (A mutated length field
can make an image-data chunk swallow the marker part after it: those bytes are inside the
bitstream the rebuild copies byte for byte; the run counts them.)

A short run is part of the normal suite (``FUZZ_EXAMPLES``, default 500: about 30 s);
``make fuzz`` runs a longer one. Each run prints its executions count.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from chalicelib.errors import ImageServiceError
from chalicelib.imaging import ImageLimits, probe, process, sniff
from chalicelib.imaging.containers import (
    gif_blocks,
    gif_screen_end,
    jpeg_segments,
    png_chunks,
    riff_chunks,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
LIMITS = ImageLimits(1 << 20, 1_000_000, 64 << 20, 20, (16,))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
MARK = "FUZZLEAK52N13E"
_runs = itertools.count()
_stats = {"accepted": 0, "refused": 0, "in image data": 0}
#: Parts whose bytes are the compressed image, copied byte for byte: a mutation that
#: grows one (its length field overwritten) swallows what follows it, marker included.
IMAGE_DATA = {b"VP8 ", b"VP8L", b"ALPH", b"ANMF", b"IDAT", b"fdAT", b"\xff\xda", b"\x2c"}


def part_kind(kind: str, part: bytes) -> bytes:
    """The kind of one part of :func:`split`: fourcc, chunk type, JPEG marker bytes or
    GIF introducer."""
    if kind == "image/png":
        return part[4:8]
    if kind == "image/webp":
        return part[:4]
    return part[:2] if kind == "image/jpeg" else part[:1]


def leaked(data: bytes) -> bool:
    """Whether :data:`MARK` is in ``data`` raw or decoded as UTF-8/UTF-16 (LE, BE)."""
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        if MARK.encode(encoding) in data:
            return True
    texts = [data.decode("utf-8", "ignore")]
    texts += [data[i:].decode(e, "ignore") for e in ("utf-16-le", "utf-16-be") for i in (0, 1)]
    return any(MARK in text for text in texts)


def _exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "FuzzCam"
    exif.get_ifd(0x8825).update({1: "N", 0x12: MARK})
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + MARK.encode()
    data: bytes = exif.tobytes()
    return data


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _riff(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


XMP = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><GPSLatitude xmlns="http://ns.adobe.com/exif/1.0/">{MARK}</GPSLatitude></x:xmpmeta>'.encode()
#: Parts carrying the marker, per format: every one is of a kind the allowlist drops.
MARKED: dict[str, list[bytes]] = {
    "image/jpeg": [
        _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP),
        _jpeg_segment(0xE1, _exif_with_gps()),
        _jpeg_segment(0xED, b"Photoshop 3.0\x00" + MARK.encode()),
        _jpeg_segment(0xFE, MARK.encode("utf-16")),
        _jpeg_segment(0xE0, b"JFXX\x00" + MARK.encode()),
        _jpeg_segment(0xE2, b"MPF\x00" + MARK.encode()),
    ],
    "image/png": [
        _png_chunk(b"tEXt", b"Comment\x00" + MARK.encode()),
        _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP),
        _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(MARK.encode())),
        _png_chunk(b"eXIf", _exif_with_gps()[6:]),
        _png_chunk(b"prVt", MARK.encode()),
    ],
    "image/webp": [
        _riff(b"XMP ", XMP),
        _riff(b"EXIF", _exif_with_gps()[6:]),
        _riff(b"LOCN", MARK.encode()),
    ],
    "image/gif": [
        b"\x21\xfe" + bytes([len(MARK)]) + MARK.encode() + b"\x00",
        b"\x21\xff\x0bXMP DataXMP" + XMP + bytes([1, *range(255, -1, -1), 0]),
        b"\x21\xff\x0bGEOTAG1.000" + bytes([len(MARK)]) + MARK.encode() + b"\x00",
    ],
}


def split(data: bytes) -> list[bytes]:
    """A seed's parts: the bytes before the first chunk/segment/block, then each one."""
    kind = sniff(data)
    if kind == "image/jpeg":
        bounds = [(s.start, s.end) for s in jpeg_segments(data)]
    elif kind == "image/png":
        bounds = [(0, 8)] + [(c.start, c.end) for c in png_chunks(data)]
    elif kind == "image/webp":
        bounds = [(0, 12)] + [(c.start, c.end) for c in riff_chunks(data, 12, len(data))]
    else:
        bounds = [(0, gif_screen_end(data))] + [(b.start, b.end) for b in gif_blocks(data)]
    return [data[start:end] for start, end in bounds]


def join(kind: str, parts: list[bytes]) -> bytes:
    data = b"".join(parts)
    if kind == "image/webp" and len(data) >= 12:  # keep the RIFF size right, mostly
        data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    return data


SEEDS = {path.name: path.read_bytes() for path in sorted(CORPUS.iterdir())}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """(seed name, mutated bytes)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = SEEDS[name]
    kind = sniff(data) or ""
    parts = split(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(["insert", "insert", "drop", "dup", "swap", "flip", "cut", "append"])
        )
        index = draw(st.integers(1, max(1, len(parts) - 1)))
        if op == "insert":
            parts.insert(index, draw(st.sampled_from(MARKED[kind])))
        elif op == "drop" and len(parts) > 2:
            del parts[index]
        elif op == "dup":
            parts.insert(index, parts[min(index, len(parts) - 1)])
        elif op == "swap" and len(parts) > 2:
            other = draw(st.integers(1, len(parts) - 1))
            parts[index], parts[other] = parts[other], parts[index]
        elif op == "flip" and index < len(parts) and parts[index]:
            part = bytearray(parts[index])
            part[draw(st.integers(0, len(part) - 1))] = draw(st.integers(0, 255))
            parts[index] = bytes(part)
        elif op == "cut":
            whole = join(kind, parts)
            parts = [whole[: draw(st.integers(1, len(whole)))]]
        elif op == "append":
            parts.append(
                draw(st.sampled_from([MARK.encode(), MARK.encode("utf-16-le"), b"\x00" * 7]))
            )
    return name, join(kind, parts)


def _decoded_frames(data: bytes) -> list[bytes] | None:
    """Every frame's pixels as Pillow decodes ``data``, or None when it cannot."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = []
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                image.load()
                frames.append(image.tobytes())
            return frames
    except Exception:
        return None


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mutated_images_are_refused_or_stored_without_the_marker(case: tuple[str, bytes]) -> None:
    name, data = case
    next(_runs)
    try:
        probe(data, LIMITS)
        result = process(data, LIMITS)
    except ImageServiceError:
        _stats["refused"] += 1
        return
    _stats["accepted"] += 1
    if leaked(result.original):
        holders = {
            part_kind(result.info.content_type, part)
            for part in split(result.original)
            if leaked(part)
        }
        assert holders and holders <= IMAGE_DATA, (name, holders)
        _stats["in image data"] += 1
    rebuilt = _decoded_frames(result.original)
    assert rebuilt is not None, name
    before = _decoded_frames(data)
    if before is not None and len(before) == len(rebuilt):
        assert rebuilt[0] == before[0], name


def test_print_the_executions_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the fuzz test (file order): reports what it did."""
    with capsys.disabled():
        print(
            f"\nfuzz: {next(_runs)} executions ({_stats['accepted']} accepted, "
            f"{_stats['refused']} refused; a marker swallowed by image data kept "
            f"{_stats['in image data']} times), {len(SEEDS)} seeds"
        )
