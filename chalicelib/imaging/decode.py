"""Pillow, imported on first use (``import app`` stays cheap for routes that never touch
an image), and what is read through it: EXIF orientation, the date taken, and the
decoding of every frame of the rebuilt bytes.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.imaging.model import FORMATS, STILL_ONLY, ImageInfo

if TYPE_CHECKING:
    from PIL import Image as PILImage

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
T = TypeVar("T")


@functools.cache
def pillow() -> Any:
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


def pillow_format(content_type: str) -> str:
    """Pillow's format name for a sniffed content type (``JPEG``, ``PNG``, ...)."""
    return FORMATS[content_type][1]


def orientation_of(exif: Any) -> int:
    """The orientation (1-8) of a Pillow ``Exif``; 1 when absent or out of range."""
    value = exif.get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(payload: bytes) -> int:
    """The orientation of an EXIF block (``Exif\\0\\0`` prefix optional); 1 when none
    or unreadable."""
    try:
        exif = pillow().Exif()
        exif.load(payload)
        return orientation_of(exif)
    except Exception:
        return 1


def taken_at(exif: Any) -> str | None:
    """EXIF ``DateTimeOriginal`` (``2024:05:01 13:45:10``) as ``2024-05-01T13:45:10``,
    with ``OffsetTimeOriginal`` (``+02:00``) appended when it is one; None when absent
    or not a date."""
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
    if isinstance(offset, str):
        offset = offset.strip("\x00 ")
        digits = offset[1:3] + offset[4:6]
        if len(offset) == 6 and offset[0] in "+-" and offset[3] == ":" and _ascii_digits(digits):
            text += offset
    return text


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def decode(
    data: bytes,
    info: ImageInfo,
    draft: tuple[int, int] | None,
    first_frame: Callable[[PILImage.Image], T],
) -> tuple[T, Any]:
    """Decode every frame of ``data``: the first (JPEG at ``draft``, Pillow's DCT
    scaling) is handed to ``first_frame`` while it is the only frame held, then the
    others are decoded one after the other (each replacing the previous).

    Returns:
        (what ``first_frame`` returned, the image's Pillow ``Exif``).

    Raises:
        ValueError: fewer frames decode than ``info.frames``; Pillow's own errors for a
            truncated or corrupt frame (the caller's 415).
    """
    image_module = pillow()
    fmt = pillow_format(info.content_type)
    with image_module.open(io.BytesIO(data), formats=[fmt]) as image:
        if draft is not None:
            image.draft(image.mode, draft)
        image.load()
        exif = image.getexif()
        made = first_frame(image)
        frames = 1 if info.content_type in STILL_ONLY else int(getattr(image, "n_frames", 1))
        if frames != info.frames:  # e.g. a GIF cut inside its last frame
            raise ValueError(f"{frames} frames decodable, {info.frames} in the header")
        for index in range(1, frames):
            image.seek(index)
            image.load()
    return made, exif
