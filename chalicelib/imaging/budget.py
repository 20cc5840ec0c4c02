"""The decode budget: what decoding an image will hold at once and how much work it is,
from its header (:class:`~.header.Header`), before a pixel is decoded.

``held_bytes`` = canvas pixels (after JPEG draft scaling) x :data:`BYTES_PER_PIXEL` of
the decoded mode, + the full-size conversion :mod:`.renditions` makes for palette and
1-bit images (:data:`CONVERSION_BYTES`), + what the format's decoder keeps besides
Pillow's image (:data:`DECODER_BYTES`: libjpeg's coefficients of a progressive JPEG at
full size, the previous frame and disposal buffer of an animation, libwebp's canvases,
libheif's planes). Frames of an animation are decoded one after the other: they count
once in memory, and all together in ``max_decoded_pixels`` (work). The numbers were
measured (peak RSS of a child process, ``tests/unit/test_decode_memory.py``): e.g. an
RGBA PNG counts 8 bytes per pixel (its image and Pillow's premultiplied copy for
resampling), 16-bit grey 2, LA 8, a palette with transparency 9, a lossless WebP 16.
"""

from __future__ import annotations

from chalicelib.errors import PayloadTooLargeError
from chalicelib.imaging.header import Header
from chalicelib.imaging.model import ImageLimits

#: Bytes per pixel of Pillow's image in each mode (RGB, LA, PA, CMYK take 4).
BYTES_PER_PIXEL: dict[str, int] = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "LA": 4,
    "PA": 4,
    "RGB": 4,
    "RGBA": 4,
    "CMYK": 4,
    "I": 4,
    "F": 4,
}
#: Full-size conversions before and while resizing, bytes per pixel: 1-bit -> L, palette
#: -> RGB(A) (then premultiplied, PA), and Pillow's premultiplied copy of LA and RGBA.
CONVERSION_BYTES: dict[str, int] = {"1": 1, "P": 4, "PA": 8, "LA": 4, "RGBA": 4}
#: Decoder state per canvas pixel, besides Pillow's image, by content type: libwebp's
#: two RGBA canvases (its animation decoder reads stills too); libheif's planes and
#: pillow-heif's interleaved copy.
DECODER_BYTES: dict[str, int] = {
    "image/jpeg": 0,  # + progressive coefficients, see held_bytes
    "image/png": 0,
    "image/gif": 0,
    "image/webp": 8,
    "image/heic": 6,
    "image/heif": 6,
    "image/avif": 6,
}
#: An animation's frames after the first, per canvas pixel: GIF and APNG keep the canvas
#: in RGB(A), the previous frame and a disposal copy; WebP copies each frame out of
#: libwebp's canvas.
ANIMATION_BYTES: dict[str, int] = {"image/gif": 8, "image/png": 8, "image/webp": 4}
#: libjpeg's coefficient buffer of a progressive JPEG, bytes per sample (all components'
#: samples at their own resolution, :attr:`~.header.Header.samples` per pixel).
PROGRESSIVE_BYTES = 2


def jpeg_draft_size(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    """The size Pillow's JPEG ``draft`` decodes ``width`` x ``height`` at for ``target``:
    the largest DCT scale 1/1, 1/2, 1/4, 1/8 that keeps both sides >= the target's."""
    scale = min(width // max(target[0], 1), height // max(target[1], 1))
    for factor in (8, 4, 2, 1):
        if scale >= factor:
            return -(-width // factor), -(-height // factor)
    return width, height


def held_bytes(header: Header, content_type: str, draft: tuple[int, int] | None) -> int:
    """Bytes decoding ``header``'s image holds at once (see the module docstring)."""
    width, height = header.width, header.height
    full = width * height
    if draft is not None:
        width, height = jpeg_draft_size(width, height, draft)
    pixels = width * height
    per_pixel = BYTES_PER_PIXEL.get(header.mode, 4) + DECODER_BYTES[content_type]
    per_pixel += CONVERSION_BYTES.get(header.mode, 0)
    if header.converts_to_rgba:  # palette with transparency: RGBA, then premultiplied
        per_pixel += 4
    if header.frames > 1:
        per_pixel += ANIMATION_BYTES.get(content_type, 0)
    held = pixels * per_pixel
    if header.progressive:
        held += int(full * header.samples * PROGRESSIVE_BYTES)
    return held


def check(
    header: Header,
    content_type: str,
    limits: ImageLimits,
    draft: tuple[int, int] | None,
    field_name: str,
) -> None:
    """Refuse what would cost more than ``limits``.

    Raises:
        PayloadTooLargeError: a frame over ``max_image_pixels``; more frames than
            ``max_animation_frames``; all frames' pixels over ``max_decoded_pixels``;
            :func:`held_bytes` over ``max_decode_bytes`` (413).
    """
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
    if pixels * header.frames > limits.max_decoded_pixels:
        raise PayloadTooLargeError(
            field_name,
            f"its {header.frames} frames of {header.width}x{header.height} are "
            f"{pixels * header.frames} pixels to decode, the limit is "
            f"{limits.max_decoded_pixels} pixels",
        )
    held = held_bytes(header, content_type, draft)
    if held > limits.max_decode_bytes:
        raise PayloadTooLargeError(
            field_name,
            f"decoding it would hold {held} bytes ({header.width}x{header.height} "
            f"pixels, {header.mode}), the limit is {limits.max_decode_bytes} bytes",
        )
