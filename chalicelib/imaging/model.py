"""The shapes :mod:`chalicelib.imaging` takes and returns, and its format table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
#: Types whose extra images are not frames: HEIF's other top-level images (bursts,
#: alternatives); only the primary one is decoded.
STILL_ONLY = ("image/jpeg", "image/heic", "image/heif")
NOT_AN_IMAGE = "not a decodable image; accepted types are JPEG, PNG, GIF, WebP, HEIC, AVIF"


@dataclass(frozen=True)
class ImageLimits:
    """What one upload may cost (see :class:`~chalicelib.config.Settings`).

    Attributes:
        max_image_bytes: largest accepted encoded image, bytes.
        max_image_pixels: largest width x height of one frame, pixels.
        max_decode_bytes: most bytes the decoder and conversions hold at once for one
            image, bytes (see :mod:`chalicelib.imaging.budget`).
        max_animation_frames: most frames of an animation.
        rendition_sizes: longer side of each rendition, pixels, ascending.
        max_decoded_pixels: most pixels of all frames together (CPU work), pixels.
    """

    max_image_bytes: int
    max_image_pixels: int
    max_decode_bytes: int
    max_animation_frames: int
    rendition_sizes: tuple[int, ...]
    max_decoded_pixels: int = 1_000_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_decode_bytes=settings.max_decode_bytes,
            max_animation_frames=settings.max_animation_frames,
            rendition_sizes=tuple(sorted(set(settings.rendition_sizes))),
            max_decoded_pixels=settings.max_decoded_pixels,
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
    """The result of :func:`chalicelib.imaging.process`.

    Attributes:
        info: see :func:`chalicelib.imaging.probe`.
        original: the bytes to store: the input rebuilt from its allowlisted parts
            (:mod:`chalicelib.imaging.rebuild`), pixels untouched (HEIC/AVIF: see
            :mod:`chalicelib.imaging.heif` for the one re-encoded case).
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
