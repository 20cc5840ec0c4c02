"""The placeholder: BlurHash and dominant colour of an image, from a 32 px copy of its
smallest rendition (constant work whatever the upload's size)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.imaging.decode import pillow

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: BlurHash components (along the longer side, along the shorter side).
BLURHASH_COMPONENTS = (4, 3)
#: Side of the thumbnail the placeholder and dominant colour are computed from, pixels.
PLACEHOLDER_SIDE = 32


def placeholder(image: PILImage.Image) -> tuple[str, str]:
    """(BlurHash string, ``#rrggbb`` dominant colour) of ``image`` (a small rendition's
    RGB or RGBA pixels), alpha composited over white."""
    import blurhash

    image_module = pillow()
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
    hashed = str(blurhash.encode(grid, x_c, y_c))
    quantized = tiny.quantize(colors=8, method=image_module.Quantize.MEDIANCUT)
    counts: list[Any] = quantized.getcolors() or [(1, 0)]
    index = int(max(counts)[1])
    palette: list[int] = quantized.getpalette() or [0, 0, 0]
    red, green, blue = palette[index * 3 : index * 3 + 3]
    return hashed, f"#{red:02x}{green:02x}{blue:02x}"
