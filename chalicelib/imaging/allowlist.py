"""THE allowlist: what a stored original keeps, per format. Everything not listed here
is dropped when the original is rebuilt (:mod:`.rebuild`); a user who needs another tag
or chunk adds a line here (the README's privacy table is checked against this module by
``tests/unit/test_privacy.py``).

EXIF is re-serialised with Pillow's ``Image.Exif`` from the tags below only: never GPS
(neither the GPS IFD nor GPS tag numbers written elsewhere), MakerNote, UserComment,
the thumbnail (IFD1), the interoperability IFD, or any tag not listed. A kept value
must be a number, a short rational, a short tuple of numbers, or printable ASCII text
of at most :data:`MAX_TEXT` characters: anything else is dropped too.
"""

from __future__ import annotations

import numbers
from typing import Any

#: IFD0 tags kept: tag -> name.
IFD0_TAGS: dict[int, str] = {
    0x010F: "Make",
    0x0110: "Model",
    0x0112: "Orientation",
    0x0132: "DateTime",
}
#: Exif sub-IFD (0x8769) tags kept: tag -> name.
EXIF_TAGS: dict[int, str] = {
    0x829A: "ExposureTime",
    0x829D: "FNumber",
    0x8822: "ExposureProgram",
    0x8827: "ISOSpeedRatings",
    0x9003: "DateTimeOriginal",
    0x9004: "DateTimeDigitized",
    0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal",
    0x9012: "OffsetTimeDigitized",
    0x9204: "ExposureBiasValue",
    0x9207: "MeteringMode",
    0x9209: "Flash",
    0x920A: "FocalLength",
    0xA001: "ColorSpace",
    0xA002: "PixelXDimension",
    0xA003: "PixelYDimension",
    0xA402: "ExposureMode",
    0xA403: "WhiteBalance",
    0xA433: "LensMake",
    0xA434: "LensModel",
}
EXIF_IFD = 0x8769
#: Longest kept EXIF text value, characters.
MAX_TEXT = 64
#: Most numbers in a kept tuple value (ISOSpeedRatings may hold a few).
MAX_NUMBERS = 4

#: JPEG: markers kept as they are (SOFn, DHT, DAC, DQT, DRI, SOS with its entropy-coded
#: scan, EOI; between progressive scans too), and APPn segments kept when their payload
#: starts with the given identifier (every ICC_PROFILE chunk).
JPEG_MARKERS: dict[int, str] = {
    **{m: f"SOF{m - 0xC0}" for m in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7)},
    **{m: f"SOF{m - 0xC0}" for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)},
    0xC4: "DHT",
    0xCC: "DAC",
    0xDB: "DQT",
    0xDD: "DRI",
    0xDA: "SOS",
    0xD9: "EOI",
}
JPEG_APP: dict[tuple[int, bytes], str] = {
    (0xE0, b"JFIF\x00"): "APP0 JFIF",
    (0xE2, b"ICC_PROFILE\x00"): "APP2 ICC_PROFILE",
    (0xEE, b"Adobe"): "APP14 Adobe",
}
#: APPn payloads kept only up to their fixed fields (JFIF: version, density, and a 0x0
#: thumbnail; Adobe: version, flags, colour transform), bytes.
JPEG_APP_FIXED: dict[int, int] = {0xE0: 14, 0xEE: 12}
#: The APP1 EXIF segment, re-serialised from the EXIF allowlist.
JPEG_EXIF = (0xE1, b"Exif\x00\x00")

#: PNG chunks kept byte for byte, up to IEND (``eXIf`` is re-serialised, before IDAT only).
PNG_CHUNKS: frozenset[bytes] = frozenset(
    {b"IHDR", b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs"}
    | {b"acTL", b"fcTL", b"fdAT", b"IDAT", b"IEND"}
)
PNG_EXIF = b"eXIf"
#: PNG chunks of a fixed size: a longer body is cut to it (the CRC recomputed).
PNG_FIXED: dict[bytes, int] = {
    b"IHDR": 13, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"acTL": 8, b"fcTL": 26,
}  # fmt: skip
#: The keyword an ``iCCP`` chunk is given (its own name could be any text).
PNG_ICC_NAME = b"ICC profile"

#: WebP chunks kept (``EXIF`` is re-serialised; inside ``ANMF`` only ALPH/VP8/VP8L stay).
WEBP_CHUNKS: frozenset[bytes] = frozenset(
    {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
)
WEBP_FRAME_CHUNKS: frozenset[bytes] = frozenset({b"ALPH", b"VP8 ", b"VP8L"})
WEBP_EXIF = b"EXIF"

#: GIF extensions kept: graphic control (0xF9) and the looping application extensions.
GIF_GRAPHIC_CONTROL = 0xF9
GIF_APPLICATIONS: frozenset[bytes] = frozenset({b"NETSCAPE2.0", b"ANIMEXTS1.0"})

#: HEIF (HEIC, AVIF) items kept as they are: coded images and derivations; the ``Exif``
#: item is rewritten in place from the EXIF allowlist; every other item (XMP ``mime``,
#: ``uri ``, unknown) is overwritten with zeros, and top-level boxes other than these
#: are emptied.
HEIF_IMAGE_ITEMS: frozenset[bytes] = frozenset(
    {b"hvc1", b"av01", b"grid", b"iden", b"iovl", b"jpeg", b"vvc1", b"avc1", b"tmap"}
)
HEIF_BOXES: frozenset[bytes] = frozenset({b"ftyp", b"meta", b"mdat"})
#: Boxes inside ``meta`` kept (other ones are zeroed; names in ``hdlr`` and ``infe`` are
#: overwritten with spaces).
HEIF_META_BOXES: frozenset[bytes] = frozenset(
    {b"hdlr", b"pitm", b"iloc", b"iinf", b"iprp", b"iref", b"idat", b"dinf"}
)
#: Item properties kept (``ipco``): coding configurations, size, colour (ICC included),
#: transformations, auxiliary and layer information; other properties (user
#: descriptions, unknown ones) are zeroed.
HEIF_PROPERTIES: frozenset[bytes] = frozenset(
    {b"hvcC", b"av1C", b"avcC", b"vvcC", b"jpgC", b"ispe", b"pixi", b"colr", b"irot"}
    | {b"imir", b"clap", b"pasp", b"auxC", b"rloc", b"lsel", b"a1op", b"a1lx", b"clli"}
    | {b"mdcv", b"cclv", b"amve"}
)


def icc_profile(profile: bytes) -> bytes | None:
    """``profile`` cut to the size its header declares (bytes after it are no part of
    it), or None when the declared size is not that of a profile that fits."""
    declared = int.from_bytes(profile[:4], "big")
    if declared < 128 or declared > len(profile):
        return None
    return profile[:declared]


def _clean_value(value: Any) -> Any:
    """``value`` when it is a kept kind (see the module docstring), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return value
    if isinstance(value, str):
        text = value.rstrip("\x00 ")
        if len(text) <= MAX_TEXT and text.isprintable() and text.isascii():
            return text
        return None
    if not isinstance(value, tuple) or not 0 < len(value) <= MAX_NUMBERS:
        return None
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    return value if numeric else None


def clean_exif(payload: bytes) -> bytes | None:
    """A TIFF-structured EXIF block holding only the allowlisted tags of ``payload``
    (with or without the ``Exif\\0\\0`` prefix; the result has none), or None when
    nothing allowlisted is there or ``payload`` is not readable EXIF.

    Cost: Pillow reads IFD0 and the Exif IFD once (linear in their entries); nothing
    else in ``payload`` (GPS IFD, IFD1, MakerNote) is followed."""
    from chalicelib.imaging.decode import pillow

    image_module = pillow()
    try:
        source = image_module.Exif()
        source.load(payload)
        kept = image_module.Exif()
        for tag in IFD0_TAGS:
            value = _clean_value(source.get(tag))
            if value is not None:
                kept[tag] = value
        sub = source.get_ifd(EXIF_IFD) if EXIF_IFD in source else {}
        sub_kept = {tag: _clean_value(sub.get(tag)) for tag in EXIF_TAGS}
        sub_kept = {tag: value for tag, value in sub_kept.items() if value is not None}
        if sub_kept:
            kept.get_ifd(EXIF_IFD).update(sub_kept)
        if not len(kept) and not sub_kept:
            return None
        data: bytes = kept.tobytes()
    except Exception:
        return None
    return data[6:]  # without "Exif\0\0"
