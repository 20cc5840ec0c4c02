"""Placeholder of the image-processing module (replaced by the full one of issue 11).

Same public API: :class:`ImageLimits`, :func:`probe`, :func:`process`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from chalicelib.config import Settings
from chalicelib.validation import EXTENSIONS, check_decodes, inspect_image


@dataclass(frozen=True)
class ImageLimits:
    """Limits of one image (bytes, pixels, frames) and the rendition sizes (pixels)."""

    max_image_bytes: int
    max_image_pixels: int
    max_decode_bytes: int
    max_animation_frames: int
    rendition_sizes: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured in ``settings``."""
        return cls(
            settings.max_image_bytes,
            settings.max_image_pixels,
            settings.max_decode_bytes,
            settings.max_animation_frames,
            settings.rendition_sizes,
        )


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: sniffed type, displayed size in pixels, frame count."""

    content_type: str
    extension: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Rendition:
    """One WebP rendition's bytes; ``size`` is its longer side in pixels."""

    size: int
    width: int
    height: int
    data: bytes
    content_type: str = "image/webp"


@dataclass(frozen=True)
class ProcessedImage:
    """The result of :func:`process`."""

    info: ImageInfo
    original: bytes
    taken_at: str | None
    placeholder: str
    dominant_color: str
    renditions: tuple[Rendition, ...]


def probe(data: bytes, limits: ImageLimits, field_name: str = "file") -> ImageInfo:
    """Header-only checks (see the full module)."""
    info = inspect_image(data, limits.max_image_bytes, limits.max_image_pixels, field_name)
    return ImageInfo(
        info.content_type, EXTENSIONS[info.content_type], info.width, info.height, frames=1
    )


def process(data: bytes, limits: ImageLimits, field_name: str = "file") -> ProcessedImage:
    """Decode, make renditions (see the full module)."""
    info = probe(data, limits, field_name)
    check_decodes(data, field_name)
    from PIL import Image

    renditions = []
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGBA")
        longer = max(image.size)
        for size in sorted({min(size, longer) for size in limits.rendition_sizes}):
            copy = image.copy()
            copy.thumbnail((size, size))
            out = io.BytesIO()
            copy.save(out, "WEBP")
            renditions.append(Rendition(size, copy.width, copy.height, out.getvalue()))
    return ProcessedImage(info, data, None, "", "#000000", tuple(renditions))
