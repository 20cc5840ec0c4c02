"""HEIC/HEIF/AVIF originals, rewritten in place: no byte moves, so every offset in the
file stays right and the coded images are untouched (decoded pixels identical).

The ``meta`` box is read for its items (``iinf``: types; ``iloc``: where their bytes
are, in the file or in ``idat``). Coded-image items (:data:`~.allowlist.HEIF_IMAGE_ITEMS`)
stay; the ``Exif`` item is overwritten with the allowlisted EXIF, zero-padded to its old
length; every other item (XMP, ``uri``, unknown) is overwritten with zeros; item names,
MIME types and the handler's name become spaces; ``mdat`` bytes no kept item points at
are zeroed; ``meta`` children and item properties
off the allowlist, and top-level boxes other than ``ftyp``/``meta``/``mdat``, keep their
header and lose their content (zeros); bytes after the last box are dropped.

Re-encoding (quality 90, ICC and allowlisted EXIF kept, no XMP) is the one case where
pixels change, and only when a lossless rewrite is impossible: the ``Exif`` item is
split in several extents, or its allowlisted EXIF does not fit its old length
(:func:`rewrite` returns None, :func:`reencode` does the rest).
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING, Any, NamedTuple

from chalicelib.imaging import allowlist
from chalicelib.imaging.containers import boxes

if TYPE_CHECKING:
    from PIL import Image as PILImage


class Item(NamedTuple):
    """One HEIF item: ``kind`` its four-byte type, ``extents`` its (file offset,
    length) spans."""

    kind: bytes
    extents: tuple[tuple[int, int], ...]


def _uint(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big") if size else 0


def items(data: bytes) -> list[Item] | None:
    """The items of a HEIF file, or None when its ``meta`` box cannot be read whole (an
    extent outside the file, an entry cut short). Each loop is bounded by the bytes of
    the box it walks."""
    meta = next((box for box in boxes(data, 0, len(data)) if box.kind == b"meta"), None)
    if meta is None:
        return []
    kinds: dict[int, bytes] = {}
    spans: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    idat_start = 0
    for box in boxes(data, meta.body + 4, meta.end):
        if box.kind == b"idat":
            idat_start = box.body
        elif box.kind == b"iinf":
            version = data[box.body]
            first = box.body + 4 + (2 if version == 0 else 4)
            for entry in boxes(data, first, box.end):
                if entry.kind != b"infe" or data[entry.body] < 2:
                    continue
                id_size = 2 if data[entry.body] == 2 else 4
                type_pos = entry.body + 4 + id_size + 2
                kinds[_uint(data, entry.body + 4, id_size)] = data[type_pos : type_pos + 4]
        elif box.kind == b"iloc":
            read = _iloc(data, box.body, box.end)
            if read is None:
                return None
            spans.update(read)
    found = []
    for item_id, kind in kinds.items():
        method, extents = spans.get(item_id, (0, []))
        if method not in (0, 1):
            return None
        base = idat_start if method == 1 else 0
        placed = tuple((base + offset, length) for offset, length in extents)
        if any(offset + length > len(data) for offset, length in placed):
            return None
        found.append(Item(kind, placed))
    return found


def _iloc(data: bytes, start: int, end: int) -> dict[int, tuple[int, list[tuple[int, int]]]] | None:
    """item id -> (construction method, [(offset, length)]) from an ``iloc`` box body."""
    version = data[start]
    sizes = data[start + 4 : start + 6]
    if len(sizes) < 2:
        return None
    offset_size, length_size = sizes[0] >> 4, sizes[0] & 15
    base_size, index_size = sizes[1] >> 4, (sizes[1] & 15 if version else 0)
    id_size = 2 if version < 2 else 4
    pos = start + 6
    count = _uint(data, pos, id_size)
    pos += id_size
    found: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    for _ in range(count):
        if pos >= end:
            return None
        item_id = _uint(data, pos, id_size)
        pos += id_size
        method = 0
        if version in (1, 2):
            method = _uint(data, pos, 2) & 15
            pos += 2
        pos += 2  # data reference index
        base = _uint(data, pos, base_size)
        pos += base_size
        extents = _uint(data, pos, 2)
        pos += 2
        listed = []
        for _ in range(extents):
            if pos >= end:
                return None
            pos += index_size
            listed.append(
                (base + _uint(data, pos, offset_size), _uint(data, pos + offset_size, length_size))
            )
            pos += offset_size + length_size
        found[item_id] = (method, listed)
    return None if pos > end else found


def rewrite(data: bytes) -> bytes:
    """``data`` with every non-image item blanked and its EXIF re-serialised in place
    (see the module docstring); ``data`` unchanged in length up to its last box. When
    the EXIF cannot be rewritten in place, its item is blanked and
    :func:`needs_reencode` says so."""
    buffer = bytearray(data[: _boxes_end(data)])
    for box in boxes(data, 0, len(buffer)):
        if box.kind not in allowlist.HEIF_BOXES:
            buffer[box.body : box.end] = bytes(box.end - box.body)
        elif box.kind == b"meta":
            _clean_meta(data, buffer, box.body + 4, box.end)
    found = items(data)
    if found is None:
        return bytes(buffer)
    kept: list[tuple[int, int]] = []  # extents of image items: the only mdat bytes kept
    for item in found:
        if item.kind in allowlist.HEIF_IMAGE_ITEMS:
            kept.extend(item.extents)
            continue
        replacement = _exif_in_place(data, item) if item.kind == b"Exif" else None
        for offset, length in item.extents:
            buffer[offset : offset + length] = replacement or bytes(length)
        if replacement:
            kept.append(item.extents[0])
    for box in boxes(data, 0, len(buffer)):
        if box.kind == b"mdat":
            _zero_outside(buffer, box.body, box.end, kept)
    return bytes(buffer)


def _zero_outside(buffer: bytearray, start: int, end: int, kept: list[tuple[int, int]]) -> None:
    """Zero ``buffer[start:end]`` but for the (offset, length) spans in ``kept``: bytes
    of ``mdat`` that no kept item points at (sorting the spans: n log n in the items)."""
    pos = start
    for offset, length in sorted(kept):
        if offset + length <= pos or offset >= end:
            continue
        if offset > pos:
            buffer[pos:offset] = bytes(offset - pos)
        pos = max(pos, offset + length)
    if pos < end:
        buffer[pos:end] = bytes(end - pos)


def _clean_meta(data: bytes, buffer: bytearray, start: int, end: int) -> None:
    """Zero the ``meta`` children and item properties off the allowlist, and overwrite
    the ``hdlr`` name and every ``infe`` string (names, MIME types) with spaces."""
    for box in boxes(data, start, end):
        if box.kind not in allowlist.HEIF_META_BOXES:
            buffer[box.body : box.end] = bytes(box.end - box.body)
        elif box.kind == b"hdlr":
            _spaces(buffer, box.body + 24, box.end)
        elif box.kind == b"iinf" and box.body < end:
            first = box.body + 4 + (2 if data[box.body] == 0 else 4)
            for entry in boxes(data, first, box.end):
                if entry.kind == b"infe" and data[entry.body] >= 2:
                    id_size = 2 if data[entry.body] == 2 else 4
                    _spaces(buffer, entry.body + 4 + id_size + 2 + 4, entry.end)
        elif box.kind == b"iprp":
            for ipco in boxes(data, box.body, box.end):
                if ipco.kind != b"ipco":
                    continue
                for prop in boxes(data, ipco.body, ipco.end):
                    if prop.kind not in allowlist.HEIF_PROPERTIES:
                        buffer[prop.body : prop.end] = bytes(prop.end - prop.body)


def _spaces(buffer: bytearray, start: int, end: int) -> None:
    """Every non-NUL byte of ``buffer[start:end]`` becomes a space (same length, so the
    strings' terminators stay where they were)."""
    chunk = bytes(buffer[start:end])
    buffer[start:end] = bytes(0x20 if byte else 0 for byte in chunk)


def _boxes_end(data: bytes) -> int:
    end = 0
    for box in boxes(data, 0, len(data)):
        end = box.end
    return end


def _exif_in_place(data: bytes, item: Item) -> bytes | None:
    """The allowlisted EXIF of a one-extent ``Exif`` item, padded to its length."""
    if len(item.extents) != 1:
        return None
    offset, length = item.extents[0]
    raw = data[offset : offset + length]
    if length < 4:
        return None
    header = 4 + struct.unpack_from(">I", raw, 0)[0]
    if header > length:
        return None
    cleaned = allowlist.clean_exif(raw[header:])
    if cleaned is None:
        return None
    replacement = raw[:header] + cleaned
    return replacement.ljust(length, b"\x00") if len(replacement) <= length else None


def needs_reencode(original: bytes, rewritten: bytes) -> bool:
    """Whether the input's EXIF had allowlisted tags that the in-place rewrite could not
    keep (split or grown EXIF, an unreadable ``meta``): then :func:`reencode` keeps them."""
    found = items(original)
    if found is None:
        return True
    for item in found:
        if item.kind == b"Exif" and _exif_in_place(original, item) is None:
            return _raw_exif(original, item) is not None
    return False


def _raw_exif(data: bytes, item: Item) -> bytes | None:
    raw = b"".join(data[offset : offset + length] for offset, length in item.extents)
    if len(raw) < 4:
        return None
    return allowlist.clean_exif(raw[4 + struct.unpack_from(">I", raw, 0)[0] :])


def reencode(original: bytes, decoded: PILImage.Image, fmt: str) -> bytes:
    """``decoded`` encoded again as ``fmt`` (``HEIF``/``AVIF``) at quality 90, with the
    ICC profile and the allowlisted EXIF of ``original`` and nothing else."""
    from chalicelib.imaging.decode import pillow

    image_module = pillow()
    with image_module.open(io.BytesIO(original), formats=[fmt]) as image:
        raw_exif = image.info.get("exif") or b""
        icc = image.info.get("icc_profile")
    options: dict[str, Any] = {"quality": 90}
    cleaned = allowlist.clean_exif(raw_exif) if raw_exif else None
    if cleaned:
        options["exif"] = b"Exif\x00\x00" + cleaned
    if icc:
        options["icc_profile"] = icc
    decoded.info = {}
    buffer = io.BytesIO()
    decoded.save(buffer, fmt, **options)
    return buffer.getvalue()
