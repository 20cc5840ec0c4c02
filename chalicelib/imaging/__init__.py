"""Image processing: all the image work of the service lives in this package.

:func:`probe` reads what an upload is from its header (cheap, no pixel decoded) and
refuses what must never be decoded; :func:`process` rebuilds the original from its safe
parts, decodes every frame of the rebuilt bytes and makes what the service stores and
serves. Only the domain errors of :mod:`chalicelib.errors` leave this package
(``InvalidInputError`` 400, ``PayloadTooLargeError`` 413, ``UnsupportedImageError``
415), each message starting with the field at fault.

=====================  ================================================================
guarantee              how (module)
=====================  ================================================================
real type              sniffed from the magic bytes (JPEG, PNG, GIF, WebP, HEIC/HEIF,
                       AVIF by its ``ftyp`` brands); the client's claim is never read;
                       anything else is a 415 (:mod:`.containers`)
privacy by allowlist   the stored original is rebuilt from the parts listed in
                       :mod:`.allowlist` (rendering chunks/segments, ICC, an EXIF block
                       re-serialised from allowlisted tags), never scrubbed: GPS, XMP,
                       IPTC, MakerNote, thumbnails, comments, unknown parts and bytes
                       after the end marker are left behind; compressed image data is
                       copied byte for byte (:mod:`.rebuild`; HEIC/AVIF rewritten in
                       place, :mod:`.heif`); the decoder reads the rebuilt bytes
linear cost            containers are split by their length fields, every length
                       checked, every loop bounded by the input's size; no regular
                       expression over metadata; metadata is never inflated (dropped
                       chunks are never read) (:mod:`.containers`)
bounded decoding       before any pixel is decoded: bytes <= ``max_image_bytes``, one
                       frame <= ``max_image_pixels``, frames <= ``max_animation_frames``,
                       all frames' pixels <= ``max_decoded_pixels`` (work), and what the
                       decoder and each conversion hold at once for the image's mode and
                       bit depth <= ``max_decode_bytes`` (:mod:`.budget`), else 413
every frame decoded    each frame of an animation is decoded, one after the other; a
                       truncated or corrupt still or animation is a 415 (:mod:`.decode`)
orientation            ``width``/``height`` as displayed (EXIF orientation 5-8 swap
                       them); renditions are turned upright
renditions             one WebP per ``rendition_sizes`` entry, longer side = that size,
                       never upscaled, sRGB, first frame, alpha kept, no metadata at
                       all; decoded once at the scale the largest needs (JPEG DCT
                       scaling, ``reduce``), resized in the decoded mode
                       (:mod:`.renditions`)
placeholder            BlurHash (4x3 components) and dominant colour from a 32 px copy
                       of the smallest rendition (:mod:`.placeholder`)
taken_at               EXIF ``DateTimeOriginal`` as ``YYYY-MM-DDTHH:MM:SS``, plus
                       ``+HH:MM`` from ``OffsetTimeOriginal`` when present; None when
                       absent or not a date (:mod:`.decode`)
=====================  ================================================================

Pillow and its plugins are imported on first use, not with this package: ``import app``
stays cheap for the routes that never touch an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.errors import (
    ImageServiceError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedImageError,
)
from chalicelib.imaging import budget, heif
from chalicelib.imaging.containers import sniff
from chalicelib.imaging.decode import decode, pillow_format, taken_at
from chalicelib.imaging.header import Header, read_header
from chalicelib.imaging.model import (
    FORMATS,
    NOT_AN_IMAGE,
    ImageInfo,
    ImageLimits,
    ProcessedImage,
    Rendition,
)
from chalicelib.imaging.placeholder import placeholder
from chalicelib.imaging.rebuild import rebuild
from chalicelib.imaging.renditions import fit, largest_size, make_renditions, rendition_sizes

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "FORMATS",
    "ImageInfo",
    "ImageLimits",
    "ProcessedImage",
    "Rendition",
    "probe",
    "process",
    "rebuild",
    "rendition_sizes",
    "sniff",
]

_HEIF_TYPES = ("image/heic", "image/heif", "image/avif")


def probe(data: bytes, limits: ImageLimits, field_name: str = "file") -> ImageInfo:
    """Sniff, rebuild (:func:`rebuild`, linear) and size ``data`` from its header alone
    (no pixel decoded), and refuse it when decoding it would cost more than ``limits``
    allow.

    Returns:
        An :class:`ImageInfo` (width/height as displayed).

    Raises:
        InvalidInputError: ``data`` is empty (400).
        PayloadTooLargeError: more than ``max_image_bytes`` bytes, or over one of the
            decode limits (:func:`chalicelib.imaging.budget.check`) (413).
        UnsupportedImageError: not a JPEG, PNG, GIF, WebP, HEIC/HEIF or AVIF header (415).
    """
    return _inspect(data, limits, field_name)[0]


def _inspect(
    data: bytes, limits: ImageLimits, field_name: str
) -> tuple[ImageInfo, bytes, tuple[int, int] | None]:
    """(info, rebuilt bytes, JPEG draft size or None): :func:`probe`'s work."""
    if not data:
        raise InvalidInputError(field_name, "the image is empty")
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLargeError(
            field_name,
            f"the image is {len(data)} bytes, the limit is {limits.max_image_bytes} bytes",
        )
    content_type = sniff(data)
    if content_type is None:
        raise UnsupportedImageError(field_name, NOT_AN_IMAGE)
    try:
        rebuilt = rebuild(data, content_type)
        header = read_header(rebuilt, content_type)
    except ImageServiceError:
        raise
    except MemoryError:
        raise PayloadTooLargeError(field_name, "refused as a decompression bomb") from None
    except Exception as exc:
        if type(exc).__name__ == "DecompressionBombError":
            raise PayloadTooLargeError(
                field_name, f"refused as a decompression bomb ({exc})"
            ) from None
        raise UnsupportedImageError(field_name, NOT_AN_IMAGE) from None
    if header.width <= 0 or header.height <= 0 or header.frames <= 0:
        raise UnsupportedImageError(field_name, NOT_AN_IMAGE)
    width, height = header.width, header.height
    if header.orientation in (5, 6, 7, 8):
        width, height = height, width
    info = ImageInfo(
        content_type=content_type,
        extension=FORMATS[content_type][0],
        width=width,
        height=height,
        frames=header.frames,
        orientation=header.orientation,
    )
    draft = _draft(header, info, limits) if content_type == "image/jpeg" else None
    budget.check(header, content_type, limits, draft, field_name)
    return info, rebuilt, draft


def _draft(header: Header, info: ImageInfo, limits: ImageLimits) -> tuple[int, int]:
    """The size a JPEG's DCT scaling is asked for: the largest rendition's, stored."""
    return fit(header.width, header.height, largest_size(info, limits))


def process(data: bytes, limits: ImageLimits, field_name: str = "file") -> ProcessedImage:
    """:func:`probe`, then decode every frame of the rebuilt bytes, and make the
    renditions and the placeholder; the rebuilt bytes are the original to store.

    Returns:
        A :class:`ProcessedImage`.

    Raises:
        InvalidInputError, PayloadTooLargeError: see :func:`probe`.
        UnsupportedImageError: a frame does not decode (truncated, corrupt) (415).
    """
    info, original, draft = _inspect(data, limits, field_name)
    try:
        (renditions, smallest, reencoded), exif = decode(
            original, info, draft, lambda first: _first_frame(first, info, limits, data, original)
        )
        placeholder_hash, dominant = placeholder(smallest)
    except ImageServiceError:
        raise
    except MemoryError:
        raise PayloadTooLargeError(field_name, "refused: decoding ran out of memory") from None
    except Exception:
        raise UnsupportedImageError(field_name, NOT_AN_IMAGE) from None
    return ProcessedImage(
        info=info,
        original=reencoded or original,
        taken_at=taken_at(exif),
        placeholder=placeholder_hash,
        dominant_color=dominant,
        renditions=renditions,
    )


def _first_frame(
    first: PILImage.Image, info: ImageInfo, limits: ImageLimits, data: bytes, rebuilt: bytes
) -> tuple[tuple[Rendition, ...], PILImage.Image, bytes | None]:
    """Renditions of the first frame, the smallest one's pixels, and for a HEIF whose
    EXIF could not be rewritten in place, the re-encoded original (else None)."""
    reencoded = None
    if info.content_type in _HEIF_TYPES and heif.needs_reencode(data, rebuilt):
        reencoded = heif.reencode(data, first.copy(), pillow_format(info.content_type))
    renditions, smallest = make_renditions(first, info, limits)
    return renditions, smallest, reencoded
