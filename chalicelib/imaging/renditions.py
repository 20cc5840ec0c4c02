"""The WebP renditions: one per configured size, longer side = that size, never
upscaled, sRGB, upright, first frame, alpha kept, no metadata at all.

The first frame is resized in the mode it was decoded in (``L``, ``LA``, ``I;16``,
``RGB``, ``RGBA``, ``CMYK``); palette and 1-bit images are converted at full size first,
and Pillow resamples ``LA``/``RGBA`` through a full-size premultiplied copy: both are
counted by :mod:`.budget`. The largest
rendition is made from the frame (``reducing_gap``: Pillow's ``reduce`` first), the
smaller ones from the largest.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any

from chalicelib.imaging.decode import pillow
from chalicelib.imaging.model import ImageInfo, ImageLimits, Rendition

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: WebP quality of renditions (Pillow's and libvips' scale, 0-100) and encoder effort.
WEBP_QUALITY = 80
WEBP_METHOD = 3
#: Modes Pillow cannot resample: converted (at full size) before resizing.
CONVERTED_BEFORE_RESIZE = ("P", "PA", "1")
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip


def rendition_sizes(width: int, height: int, sizes: tuple[int, ...]) -> list[int]:
    """The longer sides the renditions of a ``width`` x ``height`` image get: every size
    under its longer side, plus the longer side itself when a size reaches it (so never
    an upscale, and never two renditions of the same pixels)."""
    longer = max(width, height)
    chosen = sorted({size for size in sizes if size < longer})
    if any(size >= longer for size in sizes):
        chosen.append(longer)
    return chosen


def largest_size(info: ImageInfo, limits: ImageLimits) -> int:
    """Longer side of the largest rendition of ``info``, pixels."""
    return min(max(limits.rendition_sizes), max(info.width, info.height))


def fit(width: int, height: int, longer_side: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled so its longer side is ``longer_side`` (at least 1)."""
    scale = longer_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb(image: PILImage.Image) -> PILImage.Image:
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


def _resizable(image: PILImage.Image) -> PILImage.Image:
    """A 1-bit or palette image in the mode Pillow resamples it in: ``L``, ``RGB`` or
    ``RGBA`` (alpha from ``PA`` or a palette's transparency); ICC kept for later."""
    if image.mode == "1":
        converted = image.convert("L")
    else:
        alpha = image.mode == "PA" or "transparency" in image.info
        converted = image.convert("RGBA" if alpha else "RGB")
    icc = image.info.get("icc_profile")
    if icc:
        converted.info["icc_profile"] = icc
    return converted


def make_renditions(
    first: PILImage.Image, info: ImageInfo, limits: ImageLimits
) -> tuple[tuple[Rendition, ...], PILImage.Image]:
    """The WebP renditions of the decoded first frame, smallest first, and the smallest
    one's pixels (for the placeholder)."""
    image_module = pillow()
    sizes = rendition_sizes(info.width, info.height, limits.rendition_sizes)
    icc = first.info.get("icc_profile")
    if first.mode in CONVERTED_BEFORE_RESIZE:
        first = _resizable(first)
    # Resize in the stored orientation, then turn the (small) result upright.
    stored_w, stored_h = info.width, info.height
    if info.orientation in (5, 6, 7, 8):
        stored_w, stored_h = stored_h, stored_w
    largest = sizes[-1]
    target = fit(stored_w, stored_h, largest)
    base = first
    if base.size != target:
        # Pillow's reduce() has no 16-bit modes: those are resampled directly.
        gap = None if base.mode.startswith("I;16") else 2.0
        base = base.resize(target, image_module.Resampling.LANCZOS, reducing_gap=gap)
    del first
    if icc and "icc_profile" not in base.info:
        base.info["icc_profile"] = icc
    base = to_rgb(base)
    method = _TRANSPOSE.get(info.orientation)
    if method is not None:
        base = base.transpose(getattr(image_module.Transpose, method))
    pixels: list[tuple[int, PILImage.Image]] = [(largest, base)]
    for size in reversed(sizes[:-1]):
        shape = fit(info.width, info.height, size)
        pixels.append((size, base.resize(shape, image_module.Resampling.LANCZOS)))
    pixels.reverse()
    renditions = tuple(_encode(size, image) for size, image in pixels)
    return renditions, pixels[0][1]


def _encode(size: int, image: PILImage.Image) -> Rendition:
    image.info = {}  # no ICC, EXIF or XMP goes along
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return Rendition(size=size, width=image.width, height=image.height, data=buffer.getvalue())
