"""Privacy by allowlist, tested by searching bytes: for every format and every place a
location can hide, a unique marker is planted, the image is processed, and the stored
original is searched for the marker raw and decoded as UTF-8, UTF-16LE and UTF-16BE;
none may be found. The allowlisted parts (camera, date taken, orientation, ICC) survive,
and the pixels are the input's. The README's privacy table is checked against
:mod:`chalicelib.imaging.allowlist`.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageCms

from chalicelib.imaging import ImageLimits, allowlist, process

pillow_heif.register_heif_opener()
REPO = Path(__file__).resolve().parents[2]
LIMITS = ImageLimits(50 << 20, 50_000_000, 256 << 20, 300, (32,))
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
_count = itertools.count()


def marker() -> str:
    """A unique marker, shaped like a location."""
    return f"LEAK{next(_count):03d}Q52N13E"


def leaked(data: bytes, mark: str) -> bool:
    """Whether ``mark`` is in ``data`` raw, or in ``data`` decoded as UTF-8 or UTF-16 (LE
    and BE, both alignments; undecodable bytes skipped, so a marker split by junk is
    found too)."""
    if (
        mark.encode() in data
        or mark.encode("utf-16-le") in data
        or mark.encode("utf-16-be") in data
    ):
        return True
    texts = [data.decode("utf-8", "ignore")]
    for encoding, start in itertools.product(("utf-16-le", "utf-16-be"), (0, 1)):
        texts.append(data[start:].decode(encoding, "ignore"))
    return any(mark in text for text in texts)


def pattern(size: tuple[int, int] = (48, 32)) -> Image.Image:
    image = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image))


# --- EXIF -----------------------------------------------------------------------------


def camera_exif(mark: str = "", where: str = "") -> bytes:
    """TIFF EXIF (with ``Exif\\0\\0``): camera, date taken, orientation 1, and ``mark``
    hidden in ``where``: ``gps`` (GPS IFD), ``ifd0-gps`` (GPS tag numbers in IFD0),
    ``makernote``, ``usercomment``, ``ifd1`` (a thumbnail whose own EXIF has GPS)."""
    exif = Image.Exif()
    exif[0x010F] = "FixtureCam"
    exif[0x0110] = "Phone 1"
    exif[0x0112] = 1
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2024:05:01 13:45:10"
    sub[0x9011] = "+02:00"
    sub[0x829A] = 1 / 250
    if where == "gps":
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 0x12: mark})
    elif where == "ifd0-gps":
        exif[0x0012] = mark  # GPSMapDatum's number, written straight into IFD0
        exif[0x0002] = (52.0, 31.0, 12.0)
    elif where == "makernote":
        sub[0x927C] = b"Apple iOS\x00" + mark.encode()
    elif where == "usercomment":
        sub[0x9286] = b"ASCII\x00\x00\x00" + mark.encode()
    elif where == "unknown-tag":
        exif[0xC0DE] = mark
    elif where == "text-tags":  # ImageDescription, Artist, Copyright, XPComment
        exif[0x010E], exif[0x013B], exif[0x8298] = mark, mark, mark
        exif[0x9C9C] = mark.encode("utf-16-le")
    elif where == "long-model":  # an allowlisted tag, but not a short printable text
        exif[0x0110] = "Phone 1 " + mark * 6
    data: bytes = exif.tobytes()
    if where == "ifd1":
        data = _with_thumbnail(data, _jpeg(exif=camera_exif(mark, "gps")))
    return data


def _with_thumbnail(exif: bytes, thumbnail: bytes) -> bytes:
    """``exif`` (Pillow's little- or big-endian TIFF) with an IFD1 pointing at
    ``thumbnail``."""
    tiff = bytearray(exif[6:])
    endian = "<" if tiff[:2] == b"II" else ">"
    count = struct.unpack_from(endian + "H", tiff, 8)[0]
    next_pos = 8 + 2 + 12 * count
    ifd1 = len(tiff)
    struct.pack_into(endian + "I", tiff, next_pos, ifd1)
    thumb_at = ifd1 + 2 + 2 * 12 + 4
    tiff += struct.pack(endian + "H", 2)
    tiff += struct.pack(endian + "HHII", 0x0201, 4, 1, thumb_at)
    tiff += struct.pack(endian + "HHII", 0x0202, 4, 1, len(thumbnail))
    tiff += b"\x00\x00\x00\x00" + thumbnail
    return b"Exif\x00\x00" + bytes(tiff)


# --- XMP --------------------------------------------------------------------------------


def xmp(mark: str, style: str) -> bytes:
    """An XMP packet with ``mark`` as a location, in one of several ways of writing it."""
    head = (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    )
    tail = b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    if style == "default-namespace":
        body = f'<rdf:Description rdf:about=""><GPSLatitude xmlns="http://ns.adobe.com/exif/1.0/">{mark}</GPSLatitude></rdf:Description>'
    elif style == "shotlocation":
        body = f'<rdf:Description rdf:about="" xmlns:xmpDM="http://ns.adobe.com/xmp/1.0/DynamicMedia/"><xmpDM:shotLocation>{mark}</xmpDM:shotLocation></rdf:Description>'
    else:
        body = (
            '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
            f'exif:GPSLatitude="{mark}"/>'
        )
    packet = head + body.encode() + tail
    if style == "utf16":
        return packet.decode().encode("utf-16")
    return packet


# --- JPEG -------------------------------------------------------------------------------


def _jpeg(exif: bytes = b"", progressive: bool = False, size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": ICC, "progressive": progressive}
    if exif:
        options["exif"] = exif
    pattern(size).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _segment(marker_byte: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker_byte]) + struct.pack(">H", len(payload) + 2) + payload


def _after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def _between_scans(data: bytes, segment: bytes) -> bytes:
    first = data.index(b"\xff\xda")
    second = data.index(b"\xff\xda", first + 2)
    # the tables before the second scan come after the first scan: put it before them
    return data[:second] + segment + data[second:]


XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"


def _jpeg_icc_tail(data: bytes, mark: str) -> bytes:
    """``data`` with ``mark`` after the ICC profile, inside its APP2 segment."""
    at = data.index(b"\xff\xe2")
    length = struct.unpack_from(">H", data, at + 2)[0]
    payload = data[at + 4 : at + 2 + length] + mark.encode()
    return data[:at] + _segment(0xE2, payload) + data[at + 2 + length :]


def _jfif_thumbnail(data: bytes, mark: str) -> bytes:
    """``data``'s APP0 JFIF with a thumbnail whose RGB bytes spell ``mark``."""
    pixels = mark.encode().ljust(6 * 3, b" ")
    jfif = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x06\x01" + pixels)
    assert data[2:4] == b"\xff\xe0"
    length = struct.unpack_from(">H", data, 4)[0]
    return data[:2] + jfif + data[4 + length :]


def _extended_xmp(mark: str) -> list[bytes]:
    packet = xmp(mark, "plain")
    half = packet.index(mark.encode()) + len(mark) // 2  # split inside the marker
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    parts = [packet[:half], packet[half:]]
    offsets = [0, half]
    return [
        _segment(
            0xE1,
            b"http://ns.adobe.com/xmp/extension/\x00"
            + guid
            + struct.pack(">II", len(packet), at)
            + part,
        )
        for part, at in zip(parts, offsets, strict=True)
    ]


def jpeg_cases() -> dict[str, Callable[[str], bytes]]:
    base = _jpeg(camera_exif())
    progressive = _jpeg(camera_exif(), progressive=True)
    return {
        **{f"exif-{w}": (lambda m, w=w: _jpeg(camera_exif(m, w))) for w in EXIF_PLACES},
        **{
            f"xmp-{s}": (lambda m, s=s: _after_soi(base, _segment(0xE1, XMP_ID + xmp(m, s))))
            for s in XMP_STYLES
        },
        "xmp-extended": lambda m: _after_soi(
            base, _segment(0xE1, XMP_ID + xmp("x", "plain")), *_extended_xmp(m)
        ),
        "iptc-app13": lambda m: _after_soi(
            base, _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + m.encode())
        ),
        "com": lambda m: _after_soi(base, _segment(0xFE, m.encode())),
        "app1-between-scans": lambda m: _between_scans(
            progressive, _segment(0xE1, XMP_ID + xmp(m, "plain"))
        ),
        "app15-between-scans": lambda m: _between_scans(progressive, _segment(0xEF, m.encode())),
        "second-exif": lambda m: _after_soi(base, _segment(0xE1, camera_exif(m, "gps"))),
        "after-eoi": lambda m: base + m.encode() + b"\xff\xd9",
        "secondary-image": lambda m: base + _jpeg(camera_exif(m, "gps")),
        "icc-app2-lookalike": lambda m: _after_soi(base, _segment(0xE2, b"MPF\x00" + m.encode())),
        "app14-adobe-with-more": lambda m: _after_soi(
            base, _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01" + m.encode())
        ),
        "jfif-thumbnail": lambda m: _jfif_thumbnail(base, m),
        "after-icc-profile": lambda m: _jpeg_icc_tail(base, m),
    }


EXIF_PLACES = (
    "gps", "ifd0-gps", "makernote", "usercomment", "ifd1", "unknown-tag", "text-tags", "long-model"
)  # fmt: skip
XMP_STYLES = ("plain", "default-namespace", "shotlocation", "utf16")


# --- PNG --------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(exif: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": ICC}
    if exif:
        options["exif"] = exif
    pattern().save(buffer, "PNG", **options)
    return buffer.getvalue()


def _before_idat(data: bytes, chunk: bytes) -> bytes:
    at = data.index(b"IDAT") - 4
    return data[:at] + chunk + data[at:]


def _itxt(keyword: bytes, text: bytes, compressed: bool, damage: bool = False) -> bytes:
    if compressed:
        text = zlib.compress(text)
        if damage:
            text = text[:-4] + b"\x00\x00\x00\x00"  # a broken Adler-32 trailer
    return png_chunk(b"iTXt", keyword + b"\x00" + bytes([compressed, 0]) + b"\x00\x00" + text)


def _png_icc_named(data: bytes, mark: str) -> bytes:
    """``data`` with its iCCP chunk's profile name set to ``mark``."""
    at = data.index(b"iCCP") - 4
    length = struct.unpack_from(">I", data, at)[0]
    body = data[at + 8 : at + 8 + length]
    renamed = png_chunk(b"iCCP", mark.encode() + body[body.index(b"\x00") :])
    return data[:at] + renamed + data[at + 12 + length :]


def _png_with_long_gama(data: bytes, mark: str) -> bytes:
    """``data`` with a gAMA chunk whose body runs on past its 4 bytes into ``mark``."""
    return _before_idat(data, png_chunk(b"gAMA", struct.pack(">I", 45455) + mark.encode()))


def png_cases() -> dict[str, Callable[[str], bytes]]:
    base = _png(camera_exif())
    return {
        **{f"exif-{w}": (lambda m, w=w: _png(camera_exif(m, w))) for w in EXIF_PLACES},
        "text": lambda m: _before_idat(base, png_chunk(b"tEXt", b"Comment\x00" + m.encode())),
        "ztxt": lambda m: _before_idat(
            base, png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(m.encode()))
        ),
        **{
            f"itxt-xmp-{s}": (
                lambda m, s=s: _before_idat(base, _itxt(b"XML:com.adobe.xmp", xmp(m, s), False))
            )
            for s in XMP_STYLES
        },
        "itxt-compressed": lambda m: _before_idat(
            base, _itxt(b"XML:com.adobe.xmp", xmp(m, "plain"), True)
        ),
        "itxt-damaged-zlib": lambda m: _before_idat(
            base, _itxt(b"XML:com.adobe.xmp", xmp(m, "plain"), True, True)
        ),
        "exif-after-iend": lambda m: base + png_chunk(b"eXIf", camera_exif(m, "gps")[6:]),
        "exif-after-idat": lambda m: (
            base[:-12] + png_chunk(b"eXIf", camera_exif(m, "gps")[6:]) + base[-12:]
        ),
        "after-iend": lambda m: base + m.encode(),
        "unknown-chunk": lambda m: _before_idat(base, png_chunk(b"prVt", m.encode())),
        "itxt-language-tag": lambda m: _before_idat(
            base, png_chunk(b"iTXt", b"Title\x00\x00\x00" + m.encode() + b"\x00t\x00text")
        ),
        "splt": lambda m: _before_idat(base, png_chunk(b"sPLT", m.encode() + b"\x00\x08")),
        "iccp-name": lambda m: _png_icc_named(base, m),
        "gama-longer": lambda m: _png_with_long_gama(base, m),
        "raw-profile": lambda m: _before_idat(
            base, png_chunk(b"tEXt", b"Raw profile type exif\x00" + m.encode())
        ),
    }


# --- WebP -------------------------------------------------------------------------------


def riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _webp(exif: bytes = b"", xmp_packet: bytes = b"", animated: bool = False) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": ICC, "lossless": True}
    if exif:
        options["exif"] = exif
    if xmp_packet:
        options["xmp"] = xmp_packet
    image = pattern()
    if animated:
        options.update(save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)])
    image.save(buffer, "WEBP", **options)
    return buffer.getvalue()


def _add_riff(data: bytes, chunk: bytes) -> bytes:
    body = data[12:] + chunk
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _webp_icc_tail(data: bytes, mark: str) -> bytes:
    """``data`` with ``mark`` after the ICC profile, inside its ICCP chunk."""
    at = data.index(b"ICCP")
    size = struct.unpack_from("<I", data, at + 4)[0]
    chunk = riff_chunk(b"ICCP", data[at + 8 : at + 8 + size] + mark.encode())
    out = data[:at] + chunk + data[at + 8 + size + (size & 1) :]
    return b"RIFF" + struct.pack("<I", len(out) - 8) + out[8:]


def _into_anmf(data: bytes, chunk: bytes) -> bytes:
    at = data.index(b"ANMF")
    size = struct.unpack_from("<I", data, at + 4)[0]
    frame = data[at + 8 : at + 8 + size] + chunk
    out = data[:at] + riff_chunk(b"ANMF", frame) + data[at + 8 + size + (size & 1) :]
    return b"RIFF" + struct.pack("<I", len(out) - 8) + out[8:]


def webp_cases() -> dict[str, Callable[[str], bytes]]:
    base = _webp(camera_exif())
    return {
        **{f"exif-{w}": (lambda m, w=w: _webp(camera_exif(m, w))) for w in EXIF_PLACES},
        **{f"xmp-{s}": (lambda m, s=s: _webp(camera_exif(), xmp(m, s))) for s in XMP_STYLES},
        "unknown-chunk": lambda m: _add_riff(base, riff_chunk(b"LOCN", m.encode())),
        "after-riff": lambda m: base + m.encode(),
        "after-icc-profile": lambda m: _webp_icc_tail(base, m),
        "unknown-chunk-in-frame": lambda m: _into_anmf(
            _webp(camera_exif(), animated=True), riff_chunk(b"LOCN", m.encode())
        ),
    }


# --- GIF --------------------------------------------------------------------------------


def _gif(animated: bool = False) -> bytes:
    buffer = io.BytesIO()
    image = pattern().quantize(32)
    options: dict[str, object] = {}
    if animated:
        options.update(
            save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)], loop=0
        )
    image.save(buffer, "GIF", **options)
    return buffer.getvalue()


def _sub_blocks(data: bytes) -> bytes:
    return (
        b"".join(
            bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)
        )
        + b"\x00"
    )


def _before_trailer(data: bytes, block: bytes) -> bytes:
    assert data[-1:] == b"\x3b"
    return data[:-1] + block + b"\x3b"


def gif_cases() -> dict[str, Callable[[str], bytes]]:
    base = _gif()
    animated = _gif(animated=True)
    xmp_magic = bytes([1, *range(255, -1, -1), 0])  # the XMP spec's "magic trailer"
    return {
        "comment": lambda m: _before_trailer(base, b"\x21\xfe" + _sub_blocks(m.encode())),
        "xmp-application": lambda m: _before_trailer(
            base, b"\x21\xff\x0bXMP DataXMP" + xmp(m, "plain") + xmp_magic
        ),
        "other-application": lambda m: _before_trailer(
            base, b"\x21\xff\x0bGEOTAG1.000" + _sub_blocks(m.encode())
        ),
        "plain-text": lambda m: _before_trailer(
            base, b"\x21\x01\x0c" + b"\x00" * 12 + _sub_blocks(m.encode())
        ),
        "after-trailer": lambda m: base + m.encode(),
        "icc-application": lambda m: _before_trailer(
            base, b"\x21\xff\x0bICCRGBG1012" + _sub_blocks(m.encode())
        ),
        "netscape-extra-sub-block": lambda m: animated.replace(
            b"NETSCAPE2.0\x03\x01\x00\x00\x00",
            b"NETSCAPE2.0\x03\x01\x00\x00" + _sub_blocks(m.encode()),
            1,
        ),
        "graphic-control-extra-sub-block": lambda m: _before_trailer(
            animated, b"\x21\xf9\x04\x00\x00\x00\x00" + _sub_blocks(m.encode())
        ),
    }


# --- HEIC / AVIF --------------------------------------------------------------------------


def _heif(fmt: str, exif: bytes = b"", xmp_packet: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": ICC, "quality": 80}
    if exif:
        options["exif"] = exif
    if xmp_packet:
        options["xmp"] = xmp_packet
    pattern((64, 48)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _grow_last_mdat(data: bytes, mark: str) -> bytes:
    """``data`` (whose last box is ``mdat``) with ``mark`` inside ``mdat``, after the
    bytes any item points at."""
    at = data.rindex(b"mdat") - 4
    assert struct.unpack_from(">I", data, at)[0] == len(data) - at
    return (
        data[:at] + struct.pack(">I", len(data) - at + len(mark)) + data[at + 4 :] + mark.encode()
    )


def heif_cases(fmt: str) -> dict[str, Callable[[str], bytes]]:
    base = _heif(fmt, camera_exif())
    # Pillow's AVIF writer re-serialises EXIF without IFD1: that place cannot be planted
    places = [w for w in EXIF_PLACES if not (fmt == "AVIF" and w == "ifd1")]
    return {
        **{f"exif-{w}": (lambda m, w=w: _heif(fmt, camera_exif(m, w))) for w in places},
        **{f"xmp-{s}": (lambda m, s=s: _heif(fmt, camera_exif(), xmp(m, s))) for s in XMP_STYLES},
        "after-last-box": lambda m: base + m.encode(),
        "inside-mdat-unreferenced": lambda m: _grow_last_mdat(base, m),
        "item-mime-type": lambda m: _heif(fmt, camera_exif(), xmp("x", "plain")).replace(
            b"application/rdf+xml", m.encode().ljust(19, b"x"), 1
        ),
        "unknown-box": lambda m: base + struct.pack(">I", 8 + len(m)) + b"uuid" + m.encode(),
        "free-box": lambda m: base + struct.pack(">I", 8 + len(m)) + b"free" + m.encode(),
    }


FORMAT_CASES: dict[str, Callable[[], dict[str, Callable[[str], bytes]]]] = {
    "jpeg": jpeg_cases,
    "png": png_cases,
    "webp": webp_cases,
    "gif": gif_cases,
    "heic": lambda: heif_cases("HEIF"),
    "avif": lambda: heif_cases("AVIF"),
}
CASES = [(fmt, name) for fmt, cases in FORMAT_CASES.items() for name in cases()]
#: Formats whose compressed image data is copied byte for byte: same pixels.
LOSSLESS_REBUILD = ("jpeg", "png", "webp", "gif", "heic", "avif")


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("fmt", "case"), CASES)
def test_no_planted_marker_survives_and_the_allowlist_does(fmt: str, case: str) -> None:
    mark = marker()
    data = FORMAT_CASES[fmt]()[case](mark)
    result = process(data, LIMITS)
    assert not leaked(result.original, mark), (fmt, case)
    for rendition in result.renditions:
        assert not leaked(rendition.data, mark)
    before, after = decoded(data), decoded(result.original)
    if fmt in LOSSLESS_REBUILD:
        assert after.tobytes() == before.tobytes(), "pixels changed"
    if fmt == "gif":
        return
    exif = after.getexif()
    assert exif.get(0x010F) == "FixtureCam"
    assert exif.get(0x0110) == (None if case == "exif-long-model" else "Phone 1")
    assert exif.get_ifd(0x8769).get(0x9003) == "2024:05:01 13:45:10"
    assert exif.get_ifd(0x8825) == {}
    assert after.info.get("icc_profile") == ICC
    assert result.taken_at == "2024-05-01T13:45:10+02:00"


def test_markers_are_planted_where_a_reader_finds_them() -> None:
    """The cases are real hiding places: the marker is in the input, but for the ones that
    compress it or split it between two segments (found there once inflated or joined)."""
    hidden = {("png", "ztxt"), ("png", "itxt-compressed"), ("png", "itxt-damaged-zlib")}
    for fmt, case in CASES:
        mark = marker()
        data = FORMAT_CASES[fmt]()[case](mark)
        if (fmt, case) == ("jpeg", "xmp-extended"):
            half = len(mark) // 2
            assert mark[:half].encode() in data and mark[half:].encode() in data
        elif (fmt, case) in hidden:
            assert not leaked(data, mark)
            image = decoded(data)
            assert mark in str(image.info) or (fmt == "png" and case == "itxt-damaged-zlib")
        else:
            assert leaked(data, mark), (fmt, case)


def test_readme_privacy_table_is_the_allowlist() -> None:
    """Every tag and chunk the code keeps is in the README's table, and the table names
    nothing else."""
    readme = (REPO / "README.md").read_text()
    section = readme[
        readme.index("<!-- privacy-table -->") : readme.index("<!-- /privacy-table -->")
    ]
    names = set(re.findall(r"`([^`]+)`", section))
    kept = set(allowlist.IFD0_TAGS.values()) | set(allowlist.EXIF_TAGS.values())
    kept |= {chunk.decode().strip() for chunk in allowlist.PNG_CHUNKS | allowlist.WEBP_CHUNKS}
    kept |= (
        {"eXIf", "EXIF"} | set(allowlist.JPEG_MARKERS.values()) | set(allowlist.JPEG_APP.values())
    )
    kept |= {name.decode() for name in allowlist.GIF_APPLICATIONS | allowlist.HEIF_IMAGE_ITEMS}
    assert names == kept, (names - kept, kept - names)
