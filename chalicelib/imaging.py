"""Image processing: the Pillow work lives in this one module.

:func:`probe` reads what an upload is from its header (cheap, no pixel decoded) and
refuses what must never be decoded; :func:`process` decodes every frame and makes what
the service stores and serves. Only the domain errors of :mod:`chalicelib.errors` leave
this module (``InvalidInputError`` 400, ``PayloadTooLargeError`` 413,
``UnsupportedImageError`` 415), each message starting with the field at fault.

What it guarantees:

=====================  ================================================================
guarantee              how
=====================  ================================================================
real type              sniffed from the magic bytes (JPEG, PNG, GIF, WebP, HEIC/HEIF,
                       AVIF by its ``ftyp`` brands); the client's claim is never read;
                       anything else is a 415
bounded decoding       before any pixel is decoded: bytes <= ``max_image_bytes``,
                       width x height <= ``max_image_pixels`` per frame, width x height
                       x bytes per pixel x frames <= ``max_decode_bytes`` (bytes per
                       pixel = what the decoder holds, :data:`BYTES_PER_PIXEL`: 4 for
                       JPEG/PNG, 8 GIF/APNG/HEIC/AVIF, 12 WebP), frames <=
                       ``max_animation_frames`` (413). WebP and GIF headers are parsed
                       here, not by Pillow (Pillow's WebP opener allocates the whole
                       canvas, twice, on open); GIF frames are counted by walking its
                       blocks without decompressing them, WebP by its ``ANMF`` chunks,
                       APNG by ``acTL``
every frame decoded    :func:`process` decodes each frame of an animation; a truncated
                       or corrupt still or animation is a 415
orientation            ``width``/``height`` as displayed (EXIF orientation 5-8 swap
                       them); renditions are turned upright
renditions             one WebP per ``rendition_sizes`` entry, longer side = that size,
                       never upscaled (an image smaller than a size gets one rendition
                       at its own longer side instead), sRGB (ImageCms from the embedded
                       ICC profile), first frame, alpha kept, no metadata at all (no
                       EXIF, ICC or XMP); decoded once, at the scale the largest one
                       needs (JPEG DCT scaling, ``Image.reduce``), smaller ones derived
                       from it
location privacy       the stored original loses its EXIF GPS IFD, XMP packets naming a
                       location, IPTC (JPEG APP13) and a JPEG's MPF secondary images,
                       pixels untouched (the compressed image data is copied byte for
                       byte); other EXIF stays; the input is returned as is when there
                       is nothing to remove. HEIC/AVIF metadata that cannot be rewritten
                       in place: re-encoded (quality 90) rather than keep a location
placeholder            BlurHash (``blurhash``, 4x3 components) and dominant colour from
                       a 32 px copy of the smallest rendition
taken_at               EXIF ``DateTimeOriginal`` as ``YYYY-MM-DDTHH:MM:SS``, plus
                       ``+HH:MM`` from ``OffsetTimeOriginal`` when present (else no zone:
                       a camera's local time); None when absent or not a date
=====================  ================================================================

Pillow and its plugins are imported on first use, not with this module: ``import app``
stays cheap for the routes that never touch an image.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.errors import (
    ImageServiceError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedImageError,
)

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from chalicelib.config import Settings

#: content type -> (extension, Pillow format name)
FORMATS: dict[str, tuple[str, str]] = {
    "image/jpeg": ("jpg", "JPEG"),
    "image/png": ("png", "PNG"),
    "image/gif": ("gif", "GIF"),
    "image/webp": ("webp", "WEBP"),
    "image/heic": ("heic", "HEIF"),
    "image/heif": ("heif", "HEIF"),
    "image/avif": ("avif", "AVIF"),
}
#: Bytes per pixel the decoder of each type holds at once, what the decode bound counts:
#: Pillow's own image (RGB, RGBA and CMYK take 4 bytes) plus the decoder's buffers: GIF
#: and APNG keep the previous frame to dispose to; libheif and libavif decode into
#: planes, then into an interleaved buffer that Pillow copies; Pillow's WebP reader
#: (libwebp's animation decoder, used for stills too) holds two full canvases.
BYTES_PER_PIXEL: dict[str, int] = {
    "image/jpeg": 4,
    "image/png": 4,
    "image/gif": 8,
    "image/webp": 12,
    "image/heic": 8,
    "image/heif": 8,
    "image/avif": 8,
}
#: An animated PNG keeps the previous frame too.
APNG_BYTES_PER_PIXEL = 8
#: WebP quality of renditions (Pillow's and libvips' scale, 0-100) and encoder effort.
WEBP_QUALITY = 80
WEBP_METHOD = 3  # bench/webp_method.py: 0.93x the CPU of 4, same bytes and SSIM; README
#: BlurHash components (along the longer side, along the shorter side).
BLURHASH_COMPONENTS = (4, 3)
#: Side of the thumbnail the placeholder and dominant colour are computed from, pixels.
PLACEHOLDER_SIDE = 32

#: Types whose extra images are not frames: HEIF's other top-level images (bursts,
#: alternatives) and a JPEG's MPF secondary images; only the primary one is decoded.
_STILL_ONLY = ("image/jpeg", "image/heic", "image/heif")
_NOT_AN_IMAGE = "not a decodable image; accepted types are JPEG, PNG, GIF, WebP, HEIC, AVIF"
_EXIF_TAG_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_XMP_JPEG_PREFIXES = (
    b"http://ns.adobe.com/xap/1.0/\x00",
    b"http://ns.adobe.com/xmp/extension/\x00",
)
#: An XMP property naming a place: exif:GPS*, photoshop:City/State/Country,
#: Iptc4xmpCore:Location/CountryCode, Iptc4xmpExt:LocationCreated/LocationShown, ...
_XMP_LOCATION = re.compile(
    rb"(?i)[a-z0-9_-]+:(gps[a-z]*|[a-z]*latitude|[a-z]*longitude|location[a-z]*|city|state"
    rb"|country[a-z]*|sublocation)\b"
)
#: A minimal XMP packet, for overwriting one in place (HEIC).
_EMPTY_XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
)
_EMPTY_XMP_END = b'<?xpacket end="w"?>'


@dataclass(frozen=True)
class ImageLimits:
    """What one upload may cost (see :class:`~chalicelib.config.Settings`).

    Attributes:
        max_image_bytes: largest accepted encoded image, bytes.
        max_image_pixels: largest width x height of one frame, pixels.
        max_decode_bytes: largest width x height x bytes per pixel x frames, bytes
            (see :data:`BYTES_PER_PIXEL`).
        max_animation_frames: most frames of an animation.
        rendition_sizes: longer side of each rendition, pixels, ascending.
    """

    max_image_bytes: int
    max_image_pixels: int
    max_decode_bytes: int
    max_animation_frames: int
    rendition_sizes: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_decode_bytes=settings.max_decode_bytes,
            max_animation_frames=settings.max_animation_frames,
            rendition_sizes=tuple(sorted(set(settings.rendition_sizes))),
        )


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, as displayed.

    Attributes:
        content_type: ``image/jpeg``, ``image/png``, ``image/gif``, ``image/webp``,
            ``image/heic``, ``image/heif`` or ``image/avif`` (sniffed).
        extension: ``jpg``, ``png``, ``gif``, ``webp``, ``heic``, ``heif`` or ``avif``.
        width, height: pixels as displayed (EXIF orientation 5-8 swap the stored sides).
        frames: number of frames, 1 for a still image.
        orientation: the EXIF orientation (1-8) the renditions apply; 1 when none, and
            for HEIC/HEIF, whose decoder applies its own transformations.
    """

    content_type: str
    extension: str
    width: int
    height: int
    frames: int
    orientation: int = 1


@dataclass(frozen=True)
class Rendition:
    """One WebP rendition: ``size`` is the requested longer side (pixels), ``width`` and
    ``height`` its pixels, ``data`` the encoded bytes."""

    size: int
    width: int
    height: int
    data: bytes
    content_type: str = "image/webp"

    @property
    def size_bytes(self) -> int:
        """Length of ``data``, bytes."""
        return len(self.data)


@dataclass(frozen=True)
class ProcessedImage:
    """The result of :func:`process`.

    Attributes:
        info: see :func:`probe`.
        original: the bytes to store: the input without location metadata, pixels
            untouched; the input object itself when there was nothing to remove.
        taken_at: EXIF ``DateTimeOriginal`` as ``YYYY-MM-DDTHH:MM:SS`` (``+HH:MM``
            appended from ``OffsetTimeOriginal``), or None.
        placeholder: BlurHash string.
        dominant_color: ``#rrggbb``.
        renditions: smallest first.
    """

    info: ImageInfo
    original: bytes
    taken_at: str | None
    placeholder: str
    dominant_color: str
    renditions: tuple[Rendition, ...]


# --- lazy imports -------------------------------------------------------------------------


@functools.cache
def _pillow() -> Any:
    """``PIL.Image``, with pillow-heif registered (first call only)."""
    import warnings

    import pillow_heif
    from PIL import Image

    # The limits are ours (checked from the header before Pillow sees the pixels), and
    # unreadable EXIF is handled where it is read: neither is worth a warning per upload.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", message="Truncated File Read", module="PIL")
    # Only the primary image: thumbnails, depth maps and auxiliary images are never read.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return Image


# --- probe --------------------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """The content type the magic bytes of ``data`` name, or None for anything else."""
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
        if major in _AVIF_BRANDS:
            return "image/avif"
        if major in _HEIC_BRANDS:
            return "image/heic"
        if major in _HEIF_BRANDS:
            if compatible & _AVIF_BRANDS:
                return "image/avif"
            if compatible & _HEIC_BRANDS:
                return "image/heic"
            return "image/heif"
    return None


@dataclass(frozen=True)
class _Header:
    width: int  # stored, before orientation
    height: int
    frames: int
    orientation: int


def probe(data: bytes, limits: ImageLimits, field_name: str = "file") -> ImageInfo:
    """Sniff and size ``data`` from its header alone (no pixel decoded), and refuse it
    when decoding it would cost more than ``limits`` allow.

    Returns:
        An :class:`ImageInfo` (width/height as displayed).

    Raises:
        InvalidInputError: ``data`` is empty (400).
        PayloadTooLargeError: more than ``max_image_bytes`` bytes; a frame of more than
            ``max_image_pixels`` pixels; more than ``max_animation_frames`` frames; or
            width x height x :data:`BYTES_PER_PIXEL` x frames over ``max_decode_bytes``
            (413).
        UnsupportedImageError: not a JPEG, PNG, GIF, WebP, HEIC/HEIF or AVIF header (415).
    """
    if not data:
        raise InvalidInputError(field_name, "the image is empty")
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLargeError(
            field_name,
            f"the image is {len(data)} bytes, the limit is {limits.max_image_bytes} bytes",
        )
    content_type = sniff(data)
    if content_type is None:
        raise UnsupportedImageError(field_name, _NOT_AN_IMAGE)
    try:
        if content_type == "image/webp":
            header = _webp_header(data)
        elif content_type == "image/gif":
            header = _gif_header(data)
        elif content_type == "image/png":
            header = _png_header(data)
        else:
            header = _pillow_header(data, content_type)
    except ImageServiceError:
        raise
    except MemoryError:
        raise PayloadTooLargeError(field_name, "refused as a decompression bomb") from None
    except Exception as exc:
        if type(exc).__name__ == "DecompressionBombError":
            raise PayloadTooLargeError(
                field_name, f"refused as a decompression bomb ({exc})"
            ) from None
        raise UnsupportedImageError(field_name, _NOT_AN_IMAGE) from None
    if header.width <= 0 or header.height <= 0 or header.frames <= 0:
        raise UnsupportedImageError(field_name, _NOT_AN_IMAGE)
    _check_bounds(header, content_type, limits, field_name)
    width, height = header.width, header.height
    if header.orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(
        content_type=content_type,
        extension=FORMATS[content_type][0],
        width=width,
        height=height,
        frames=header.frames,
        orientation=header.orientation,
    )


def _check_bounds(header: _Header, content_type: str, limits: ImageLimits, field_name: str) -> None:
    pixels = header.width * header.height
    if pixels > limits.max_image_pixels:
        raise PayloadTooLargeError(
            field_name,
            f"the image is {header.width}x{header.height} pixels, the limit is "
            f"{limits.max_image_pixels} pixels",
        )
    if header.frames > limits.max_animation_frames:
        raise PayloadTooLargeError(
            field_name,
            f"the animation has {header.frames} frames, the limit is "
            f"{limits.max_animation_frames} frames",
        )
    per_pixel = BYTES_PER_PIXEL[content_type]
    if content_type == "image/png" and header.frames > 1:
        per_pixel = APNG_BYTES_PER_PIXEL
    decoded = pixels * per_pixel * header.frames
    if decoded > limits.max_decode_bytes:
        raise PayloadTooLargeError(
            field_name,
            f"decoding it would take {decoded} bytes ({header.width}x{header.height} pixels x "
            f"{per_pixel} bytes x {header.frames} frames), the limit is "
            f"{limits.max_decode_bytes} bytes",
        )


def _pillow_header(data: bytes, content_type: str) -> _Header:
    """JPEG, HEIC/HEIF, AVIF: Pillow's openers read headers only (JPEG markers up to the
    first scan; the HEIF boxes, whose decoders apply ``irot``/``imir`` themselves)."""
    import warnings

    image_module = _pillow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
        with image_module.open(io.BytesIO(data), formats=[FORMATS[content_type][1]]) as image:
            width, height = image.size
            frames = 1 if content_type in _STILL_ONLY else _n_frames(image)
            orientation = _orientation(image.getexif())
    return _Header(width, height, frames, orientation)


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, body offset, body length) of each chunk of a PNG, up to ``IEND``."""
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length


def _png_header(data: bytes) -> _Header:
    """Size (``IHDR``), frames (``acTL`` of an APNG) and EXIF orientation (``eXIf``) of
    a PNG, from its chunks (Pillow's ``getexif()`` would decode the pixels to find an
    ``eXIf`` after them)."""
    chunks = _png_chunks(data)
    kind, offset, _ = next(chunks)
    if kind != b"IHDR":
        raise ValueError("no IHDR")
    width, height = struct.unpack_from(">II", data, offset)
    frames, orientation = 1, 1
    for kind, offset, length in chunks:
        if kind == b"acTL":
            frames = struct.unpack_from(">I", data, offset)[0]
        elif kind == b"eXIf":
            orientation = _exif_orientation(data[offset : offset + length])
    return _Header(width, height, frames, orientation)


def _n_frames(image: PILImage.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def _orientation(exif: Any) -> int:
    value = exif.get(_EXIF_TAG_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _u16le(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<H", data, offset)[0]
    return value


def _u24le(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 3], "little")


def _riff_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, payload offset, payload size) of each chunk of a RIFF/WEBP file."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        yield fourcc, pos + 8, size
        pos += 8 + size + (size & 1)


def _webp_header(data: bytes) -> _Header:
    """Size, frames (``ANMF`` chunks) and EXIF orientation of a WebP, from its chunks."""
    chunks = list(_riff_chunks(data))
    if not chunks:
        raise ValueError("no chunk")
    fourcc, offset, _ = chunks[0]
    orientation = 1
    frames = 1
    if fourcc == b"VP8 ":
        if data[offset + 3 : offset + 6] != b"\x9d\x01\x2a":
            raise ValueError("no VP8 start code")
        width = _u16le(data, offset + 6) & 0x3FFF
        height = _u16le(data, offset + 8) & 0x3FFF
    elif fourcc == b"VP8L":
        if data[offset] != 0x2F:
            raise ValueError("no VP8L signature")
        bits = struct.unpack_from("<I", data, offset + 1)[0]
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
    elif fourcc == b"VP8X":
        flags = data[offset]
        width = _u24le(data, offset + 4) + 1
        height = _u24le(data, offset + 7) + 1
        if flags & 0x02:
            frames = sum(1 for chunk in chunks if chunk[0] == b"ANMF")
        for chunk_fourcc, chunk_offset, chunk_size in chunks:
            if chunk_fourcc == b"EXIF":
                orientation = _exif_orientation(data[chunk_offset : chunk_offset + chunk_size])
    else:
        raise ValueError("not a WebP bitstream")
    return _Header(width, height, frames, orientation)


def _exif_orientation(payload: bytes) -> int:
    try:
        exif = _pillow().Exif()
        exif.load(payload)
        return _orientation(exif)
    except Exception:
        return 1


def _gif_header(data: bytes) -> _Header:
    """Canvas size and frame count of a GIF, walking its blocks (LZW data is skipped by
    its sub-block lengths, never decompressed): cost is linear in the bytes."""
    width, height = _u16le(data, 6), _u16le(data, 8)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # image descriptor
            left, top, frame_w, frame_h = struct.unpack_from("<4H", data, pos + 1)
            width, height = max(width, left + frame_w), max(height, top + frame_h)
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            pos = _skip_sub_blocks(data, pos)
            frames += 1
        elif block == 0x21:  # extension
            pos = _skip_sub_blocks(data, pos + 2)
        else:  # trailer, or garbage: Pillow stops there too
            break
    return _Header(width, height, max(frames, 1), 1)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


# --- process ------------------------------------------------------------------------------


def process(data: bytes, limits: ImageLimits, field_name: str = "file") -> ProcessedImage:
    """:func:`probe`, then decode every frame, remove location metadata from the
    original, and make the renditions and the placeholder.

    Returns:
        A :class:`ProcessedImage`.

    Raises:
        InvalidInputError, PayloadTooLargeError: see :func:`probe`.
        UnsupportedImageError: a frame does not decode (truncated, corrupt) (415).
    """
    info = probe(data, limits, field_name)
    try:
        first, exif = _decode(data, info, limits)
        taken_at = _taken_at(exif)
        renditions, smallest = _renditions(first, info, limits)
        placeholder, dominant = _placeholder(smallest)
        original = strip_location(data, info.content_type)
        if info.content_type in ("image/heic", "image/heif", "image/avif"):
            original = _heif_without_location(original, first, info.content_type)
    except ImageServiceError:
        raise
    except MemoryError:
        raise PayloadTooLargeError(field_name, "refused: decoding ran out of memory") from None
    except Exception:
        raise UnsupportedImageError(field_name, _NOT_AN_IMAGE) from None
    return ProcessedImage(
        info=info,
        original=original,
        taken_at=taken_at,
        placeholder=placeholder,
        dominant_color=dominant,
        renditions=renditions,
    )


def _largest_size(info: ImageInfo, limits: ImageLimits) -> int:
    return min(max(limits.rendition_sizes), max(info.width, info.height))


def rendition_sizes(width: int, height: int, sizes: tuple[int, ...]) -> list[int]:
    """The longer sides the renditions of a ``width`` x ``height`` image get: every size
    under its longer side, plus the longer side itself when a size reaches it (so never
    an upscale, and never two renditions of the same pixels)."""
    longer = max(width, height)
    chosen = sorted({size for size in sizes if size < longer})
    if any(size >= longer for size in sizes):
        chosen.append(longer)
    return chosen


def _fit(width: int, height: int, longer_side: int) -> tuple[int, int]:
    scale = longer_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(data: bytes, info: ImageInfo, limits: ImageLimits) -> tuple[PILImage.Image, Any]:
    """Decode every frame; the first, loaded (JPEG at the smallest DCT scale that still
    covers the largest rendition), and the EXIF."""
    image_module = _pillow()
    fmt = FORMATS[info.content_type][1]
    with image_module.open(io.BytesIO(data), formats=[fmt]) as image:
        exif = image.getexif()
        if fmt == "JPEG":
            stored_w, stored_h = image.size
            target = _fit(stored_w, stored_h, _largest_size(info, limits))
            image.draft(image.mode, target)
        image.load()
        frames = 1 if info.content_type in _STILL_ONLY else _n_frames(image)
        if frames != info.frames:  # e.g. a GIF cut inside its last frame
            raise ValueError(f"{frames} frames decodable, {info.frames} in the header")
        if frames == 1:
            return image, exif  # loaded: usable once the file is closed
        first = image.copy()
        for index in range(1, frames):
            image.seek(index)
            image.load()
    return first, exif


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """8-bit RGB or RGBA (alpha kept), sRGB when an ICC profile says otherwise."""
    icc = image.info.get("icc_profile")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
    elif mode == "LA":
        image = image.convert("RGBA")
    elif mode not in ("L", "RGB", "RGBA", "CMYK"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
    out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    if icc:
        converted = _icc_to_srgb(image, icc, out_mode)
        if converted is not None:
            return converted
    return image if image.mode == out_mode else image.convert(out_mode)


def _icc_to_srgb(image: PILImage.Image, icc: bytes, out_mode: str) -> PILImage.Image | None:
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image,
            source,
            _srgb_profile(),
            outputMode=out_mode,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a profile that does not fit the pixels: take them as sRGB
    return converted


@functools.cache
def _srgb_profile() -> Any:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip


def _renditions(
    first: PILImage.Image, info: ImageInfo, limits: ImageLimits
) -> tuple[tuple[Rendition, ...], PILImage.Image]:
    """The WebP renditions, smallest first, and the smallest one's pixels."""
    image_module = _pillow()
    sizes = rendition_sizes(info.width, info.height, limits.rendition_sizes)
    icc = first.info.get("icc_profile")
    if first.mode in ("P", "PA", "1", "LA") or first.mode.startswith(("I", "F")):
        first = _to_rgb(first)
    # Resize in the stored orientation, then turn the (small) result upright.
    stored_w, stored_h = info.width, info.height
    if info.orientation in (5, 6, 7, 8):
        stored_w, stored_h = stored_h, stored_w
    largest = sizes[-1]
    target = _fit(stored_w, stored_h, largest)
    base = first
    if base.size != target:
        base = base.resize(target, image_module.Resampling.LANCZOS, reducing_gap=2.0)
    if icc and "icc_profile" not in base.info:
        base.info["icc_profile"] = icc
    base = _to_rgb(base)
    method = _TRANSPOSE.get(info.orientation)
    if method is not None:
        base = base.transpose(getattr(image_module.Transpose, method))
    pixels: list[tuple[int, PILImage.Image]] = [(largest, base)]
    for size in reversed(sizes[:-1]):
        shape = _fit(info.width, info.height, size)
        pixels.append((size, base.resize(shape, image_module.Resampling.LANCZOS)))
    pixels.reverse()
    renditions = tuple(_encode(size, image) for size, image in pixels)
    return renditions, pixels[0][1]


def _encode(size: int, image: PILImage.Image) -> Rendition:
    image.info = {}  # no ICC, EXIF or XMP goes along
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return Rendition(size=size, width=image.width, height=image.height, data=buffer.getvalue())


def _placeholder(image: PILImage.Image) -> tuple[str, str]:
    """BlurHash and ``#rrggbb`` dominant colour of ``image`` (a small rendition's pixels),
    alpha composited over white."""
    import blurhash

    image_module = _pillow()
    tiny = image.copy()
    tiny.thumbnail((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), image_module.Resampling.BOX)
    if tiny.mode == "RGBA":
        background = image_module.new("RGBA", tiny.size, (255, 255, 255, 255))
        tiny = image_module.alpha_composite(background, tiny)
    tiny = tiny.convert("RGB")
    rows = list(tiny.getdata())
    width, height = tiny.size
    grid = [[list(rows[y * width + x]) for x in range(width)] for y in range(height)]
    long_c, short_c = BLURHASH_COMPONENTS
    x_c, y_c = (long_c, short_c) if width >= height else (short_c, long_c)
    placeholder = str(blurhash.encode(grid, x_c, y_c))
    quantized = tiny.quantize(colors=8, method=image_module.Quantize.MEDIANCUT)
    counts: list[Any] = quantized.getcolors() or [(1, 0)]
    index = int(max(counts)[1])
    palette: list[int] = quantized.getpalette() or [0, 0, 0]
    red, green, blue = palette[index * 3 : index * 3 + 3]
    return placeholder, f"#{red:02x}{green:02x}{blue:02x}"


def _taken_at(exif: Any) -> str | None:
    """EXIF ``DateTimeOriginal`` (``2024:05:01 13:45:10``) as ``2024-05-01T13:45:10``,
    with ``OffsetTimeOriginal`` (``+02:00``) appended when present."""
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        return None
    raw = sub.get(_DATETIME_ORIGINAL)
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    offset = sub.get(_OFFSET_TIME_ORIGINAL)
    if isinstance(offset, str) and re.fullmatch(r"[+-]\d{2}:\d{2}", offset.strip("\x00 ")):
        text += offset.strip("\x00 ")
    return text


# --- location privacy ---------------------------------------------------------------------


def strip_location(data: bytes, content_type: str) -> bytes:
    """``data`` without location metadata, its compressed pixels copied unchanged.

    JPEG: the GPS IFD is removed from the APP1 EXIF, XMP naming a location and APP13
    (IPTC) segments are dropped. PNG: same for ``eXIf`` and XMP ``iTXt``/``tEXt``/
    ``zTXt``, and ImageMagick's ``Raw profile type`` text chunks are dropped. WebP: same
    for the ``EXIF`` and ``XMP `` chunks (``VP8X`` flags kept in step). HEIC/HEIF/AVIF:
    the EXIF and XMP items are overwritten in place (same length, so no offset moves).
    GIF carries no location. Returns ``data`` itself when nothing had to go.
    """
    if content_type == "image/jpeg":
        return _strip_jpeg(data)
    if content_type == "image/png":
        return _strip_png(data)
    if content_type == "image/webp":
        return _strip_webp(data)
    if content_type in ("image/heic", "image/heif", "image/avif"):
        return _strip_isobmff(data)
    return data


def exif_without_location(payload: bytes) -> bytes | None:
    """A TIFF-structured EXIF block (``Exif\\0\\0`` prefix optional, kept as given)
    without its GPS IFD; None when it has none. Unreadable EXIF comes back empty
    (``b""``): what cannot be read cannot be shown to be free of a location."""
    prefix = b"Exif\x00\x00" if payload.startswith(b"Exif\x00\x00") else b""
    try:
        exif = _pillow().Exif()
        exif.load(payload)
        if _GPS_IFD not in exif:
            return None
        exif.get_ifd(_EXIF_IFD)  # loaded, so tobytes() writes it out again
        del exif[_GPS_IFD]
        exif._ifds.pop(_GPS_IFD, None)
        rebuilt: bytes = exif.tobytes()[6:]
    except Exception:
        return b""
    return prefix + rebuilt


def xmp_has_location(xmp: bytes) -> bool:
    """Whether an XMP packet names a property about a place (GPS, city, location, ...)."""
    return _XMP_LOCATION.search(xmp) is not None


def _strip_jpeg(data: bytes) -> bytes:
    out = [data[:2]]
    pos = 2
    changed = False
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            out.append(data[pos : pos + 1])
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan: entropy-coded data follows
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        segment = data[pos : pos + 2 + length]
        payload = segment[4:]
        pos += 2 + length
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            cleaned = exif_without_location(payload)
            if cleaned is not None:
                changed = True
                if not cleaned or len(cleaned) + 2 > 0xFFFF:
                    continue
                segment = b"\xff\xe1" + struct.pack(">H", len(cleaned) + 2) + cleaned
        elif marker == 0xE1 and payload.startswith(_XMP_JPEG_PREFIXES):
            if xmp_has_location(payload):
                changed = True
                continue
        elif marker == 0xED:  # Photoshop IRB / IPTC: may hold city, country, sublocation
            changed = True
            continue
        out.append(segment)
    tail = data[pos:]
    end = tail.find(b"\xff\xd9")  # the primary image's EOI (scan data stuffs 0xFF bytes)
    trailer = tail[end + 2 :] if end != -1 else b""
    if trailer and (b"Exif\x00\x00" in trailer or xmp_has_location(trailer)):
        # MPF secondary images (depth maps, previews) carry EXIF of their own, GPS
        # included: they go, and with them the MPF index that points at them.
        out = [s for s in out if not (s[:2] == b"\xff\xe2" and s[4:8] == b"MPF\x00")]
        tail = tail[: end + 2]
        changed = True
    if not changed:
        return data
    out.append(tail)
    return b"".join(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_text(kind: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk body."""
    keyword, _, rest = body.partition(b"\x00")
    if kind == b"zTXt":
        return keyword, zlib.decompress(rest[1:])
    if kind == b"iTXt":
        compressed = rest[:1] == b"\x01"
        _, _, rest = rest[2:].partition(b"\x00")  # language
        _, _, text = rest.partition(b"\x00")  # translated keyword
        return keyword, zlib.decompress(text) if compressed else text
    return keyword, rest


def _strip_png(data: bytes) -> bytes:
    out = [data[:8]]
    pos = 8
    changed = False
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        chunk = data[pos:end]
        body = data[pos + 8 : pos + 8 + length]
        pos = end
        if kind == b"eXIf":
            cleaned = exif_without_location(body)
            if cleaned is not None:
                changed = True
                if not cleaned:
                    continue
                chunk = _png_chunk(kind, cleaned)
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            try:
                keyword, text = _png_text(kind, body)
            except zlib.error:
                keyword, text = b"", b""
            if keyword.startswith(b"Raw profile type") or (
                keyword == b"XML:com.adobe.xmp" and xmp_has_location(text)
            ):
                changed = True
                continue
        out.append(chunk)
        if kind == b"IEND":
            break
    if not changed:
        return data
    out.append(data[pos:])
    return b"".join(out)


def _strip_webp(data: bytes) -> bytes:
    chunks: list[bytes] = []
    changed = False
    dropped_flags = 0
    for fourcc, offset, size in _riff_chunks(data):
        payload = data[offset : offset + size]
        if fourcc == b"EXIF":
            cleaned = exif_without_location(payload)
            if cleaned is not None:
                changed = True
                if not cleaned:
                    dropped_flags |= 0x08
                    continue
                payload = cleaned
        elif fourcc == b"XMP " and xmp_has_location(payload):
            changed = True
            dropped_flags |= 0x04
            continue
        chunks.append(
            fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
        )
    if not changed:
        return data
    if chunks and chunks[0][:4] == b"VP8X" and dropped_flags:
        first = bytearray(chunks[0])
        first[8] &= ~dropped_flags & 0xFF
        chunks[0] = bytes(first)
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each ISOBMFF box in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _read_uint(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big") if size else 0


def _heif_metadata_items(data: bytes) -> list[tuple[str, int, int]]:
    """("exif"|"xmp", file offset, length) of each EXIF and XMP item of a HEIF file
    (HEIC, AVIF), from its ``meta`` box: ``iinf`` for the item types, ``iloc`` for where
    their bytes are (in the file, or in ``idat``). Items split in several extents are
    not listed.
    """
    meta = next((box for box in _boxes(data, 0, len(data)) if box[0] == b"meta"), None)
    if meta is None:
        return []
    kinds: dict[int, str] = {}
    locations: dict[int, tuple[int, int, int]] = {}  # item -> (method, offset, length)
    idat_start = 0
    for kind, start, end in _boxes(data, meta[1] + 4, meta[2]):
        if kind == b"idat":
            idat_start = start
        elif kind == b"iinf":
            version = data[start]
            first = start + 4 + (2 if version == 0 else 4)
            for entry, entry_start, entry_end in _boxes(data, first, end):
                if entry != b"infe" or data[entry_start] < 2:
                    continue
                id_size = 2 if data[entry_start] == 2 else 4
                item_id = _read_uint(data, entry_start + 4, id_size)
                type_pos = entry_start + 4 + id_size + 2
                item_type = data[type_pos : type_pos + 4]
                rest = data[type_pos + 4 : entry_end]
                if item_type == b"Exif":
                    kinds[item_id] = "exif"
                elif item_type == b"mime" and b"application/rdf+xml" in rest:
                    kinds[item_id] = "xmp"
        elif kind == b"iloc":
            version = data[start]
            sizes = data[start + 4], data[start + 5]
            offset_size, length_size = sizes[0] >> 4, sizes[0] & 15
            base_size, index_size = sizes[1] >> 4, (sizes[1] & 15 if version else 0)
            pos = start + 6
            id_size = 2 if version < 2 else 4
            count = _read_uint(data, pos, id_size)
            pos += id_size
            for _ in range(count):
                item_id = _read_uint(data, pos, id_size)
                pos += id_size
                method = 0
                if version in (1, 2):
                    method = _read_uint(data, pos, 2) & 15
                    pos += 2
                pos += 2  # data reference index
                base = _read_uint(data, pos, base_size)
                pos += base_size
                extents = _read_uint(data, pos, 2)
                pos += 2
                spans = []
                for _ in range(extents):
                    pos += index_size
                    spans.append(
                        (
                            _read_uint(data, pos, offset_size),
                            _read_uint(data, pos + offset_size, length_size),
                        )
                    )
                    pos += offset_size + length_size
                if len(spans) == 1:
                    locations[item_id] = (method, base + spans[0][0], spans[0][1])
    items = []
    for item_id, item_kind in kinds.items():
        if item_id not in locations:
            continue
        method, offset, length = locations[item_id]
        if method == 1:
            offset += idat_start
        elif method != 0:
            continue
        if length and offset + length <= len(data):
            items.append((item_kind, offset, length))
    return items


def _heif_without_location(original: bytes, decoded: PILImage.Image, content_type: str) -> bytes:
    """``original`` when reading it back shows no location; else (metadata laid out in
    a way :func:`_strip_isobmff` does not rewrite, e.g. an EXIF item in several extents)
    ``decoded`` re-encoded at quality 90 with its EXIF minus GPS and without XMP: the one
    case where the stored original's pixels are not the uploaded ones."""
    image_module = _pillow()
    fmt = FORMATS[content_type][1]
    with image_module.open(io.BytesIO(original), formats=[fmt]) as image:
        exif = image.getexif()
        xmp = image.info.get("xmp") or b""
        raw_exif = image.info.get("exif") or b""
        icc = image.info.get("icc_profile")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    if not exif.get_ifd(_GPS_IFD) and not xmp_has_location(xmp):
        return original
    cleaned = exif_without_location(raw_exif) if raw_exif else None
    options: dict[str, Any] = {"quality": 90}
    if cleaned:
        options["exif"] = cleaned
    if icc:
        options["icc_profile"] = icc
    decoded.info = {}
    buffer = io.BytesIO()
    decoded.save(buffer, fmt, **options)
    return buffer.getvalue()


def _strip_isobmff(data: bytes) -> bytes:
    """Overwrite the EXIF (GPS IFD removed, zero-padded to its old length) and
    location-bearing XMP (an empty packet padded with spaces) items in place."""
    buffer: bytearray | None = None
    for kind, offset, length in _heif_metadata_items(data):
        item = data[offset : offset + length]
        if kind == "exif" and length > 4:
            tiff_offset = 4 + struct.unpack_from(">I", item, 0)[0]
            cleaned = exif_without_location(item[tiff_offset:])
            if cleaned is None:
                continue
            replacement = item[:tiff_offset] + cleaned
            if len(replacement) > length:  # cannot grow in place: drop the EXIF instead
                replacement = item[:tiff_offset]
            replacement = replacement.ljust(length, b"\x00")
        elif kind == "xmp" and xmp_has_location(item):
            padding = length - len(_EMPTY_XMP) - len(_EMPTY_XMP_END)
            replacement = (
                _EMPTY_XMP + b" " * padding + _EMPTY_XMP_END if padding >= 0 else b" " * length
            )
        else:
            continue
        if buffer is None:
            buffer = bytearray(data)
        buffer[offset : offset + length] = replacement
    return data if buffer is None else bytes(buffer)
