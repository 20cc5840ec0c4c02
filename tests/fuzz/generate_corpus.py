"""Regenerate the fuzzing seeds: ``python -m tests.fuzz.generate_corpus``.

Writes small real files into ``tests/fuzz/corpus/`` (a few KB each): JPEG baseline and
progressive, PNG RGBA / palette with transparency / 16-bit grey / APNG, WebP lossy,
lossless and animated, GIF animated; each carries camera EXIF (where the format has
EXIF) and an ICC profile, so the fuzzer mutates real container structures.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageCms

CORPUS = Path(__file__).resolve().parent / "corpus"


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "FixtureCam"
    exif[0x0110] = "Phone 1"
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 13:45:10"
    data: bytes = exif.tobytes()
    return data


def seeds() -> dict[str, bytes]:
    """name -> bytes of each seed."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = Image.linear_gradient("L").resize((24, 16))
    rgb = Image.merge("RGB", (grey, grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey))
    rgba = Image.merge("RGBA", (*rgb.split(), grey))
    turned = rgb.transpose(Image.Transpose.ROTATE_180)
    out: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, fmt: str, **options: object) -> None:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out[name] = buffer.getvalue()

    save("baseline.jpg", rgb, "JPEG", exif=_exif(), icc_profile=icc)
    save("progressive.jpg", rgb, "JPEG", exif=_exif(), progressive=True)
    save("rgba.png", rgba, "PNG", exif=_exif(), icc_profile=icc)
    save("palette.png", rgb.quantize(16), "PNG", transparency=0)
    save("grey16.png", grey.convert("I").point(lambda v: v * 257).convert("I;16"), "PNG")
    save("animated.png", rgba, "PNG", save_all=True, append_images=[turned.convert("RGBA")])
    save("lossy.webp", rgb, "WEBP", exif=_exif(), icc_profile=icc, quality=50)
    save("lossless.webp", rgba, "WEBP", lossless=True, exif=_exif())
    save("animated.webp", rgb, "WEBP", save_all=True, append_images=[turned], lossless=True)
    save(
        "animated.gif",
        rgb.quantize(16),
        "GIF",
        save_all=True,
        append_images=[turned.quantize(16)],
        loop=0,
    )
    return out


if __name__ == "__main__":
    CORPUS.mkdir(exist_ok=True)
    for name, data in seeds().items():
        (CORPUS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
