"""chalicelib.imaging: every guarantee of its docstring table, on real files.

The files are in tests/fixtures/processing/, written by
tests/fixtures/generate_processing.py; larger images are made here with Pillow.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image, ImageCms

from chalicelib.config import Settings
from chalicelib.errors import (
    ImageServiceError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedImageError,
)
from chalicelib.imaging import (
    ImageLimits,
    probe,
    process,
    rendition_sizes,
    sniff,
)
from chalicelib.imaging.rebuild import rebuild

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "processing"
REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
DEFAULT = ImageLimits.from_settings(Settings("b", "t", "s" * 32))
#: Small rendition sizes, so the 64 px fixtures get several renditions.
SMALL = ImageLimits(50 * MIB, 50_000_000, 256 * MIB, 300, (16, 32, 320))

pillow_heif.register_heif_opener()


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# name -> content type, extension, width, height (as displayed), frames
EXPECTED = {
    "gps-orient6.jpg": ("image/jpeg", "jpg", 48, 64, 1),
    "cmyk.jpg": ("image/jpeg", "jpg", 40, 30, 1),
    "p3.jpg": ("image/jpeg", "jpg", 40, 30, 1),
    "rgb16.png": ("image/png", "png", 40, 30, 1),
    "gps.png": ("image/png", "png", 40, 30, 1),
    "gps.webp": ("image/webp", "webp", 40, 30, 1),
    "gps.heic": ("image/heic", "heic", 64, 48, 1),
    "gps.avif": ("image/avif", "avif", 64, 48, 1),
    "animated.gif": ("image/gif", "gif", 32, 24, 8),
    "animated.webp": ("image/webp", "webp", 32, 24, 8),
    "animated.png": ("image/png", "png", 32, 24, 8),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_reads_the_header(name: str) -> None:
    content_type, extension, width, height, frames = EXPECTED[name]
    info = probe(read(name), DEFAULT)
    assert (info.content_type, info.extension, info.width, info.height, info.frames) == (
        content_type,
        extension,
        width,
        height,
        frames,
    )
    assert sniff(read(name)) == content_type


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_renditions_are_bare_webp_of_each_size(name: str) -> None:
    _, _, width, height, _ = EXPECTED[name]
    result = process(read(name), SMALL)

    assert result.info == probe(read(name), SMALL)
    longer = max(width, height)
    assert [r.size for r in result.renditions] == sorted({16, 32, longer})
    for rendition in result.renditions:
        image = decoded(rendition.data)
        assert rendition.content_type == "image/webp"
        assert image.format == "WEBP"
        assert image.size == (rendition.width, rendition.height)
        assert max(image.size) == rendition.size
        # the shape of the displayed image, within rounding
        assert abs(image.width / image.height - width / height) < 0.1
        assert not getattr(image, "is_animated", False)
        assert image.mode in ("RGB", "RGBA")
        for key in ("exif", "icc_profile", "xmp"):
            assert not image.info.get(key), key
        assert image.getexif() == {}
        for chunk in (b"EXIF", b"ICCP", b"XMP "):
            assert chunk not in rendition.data
    assert result.placeholder and len(result.placeholder) == 28  # 4x3 components
    assert result.dominant_color.startswith("#") and len(result.dominant_color) == 7
    int(result.dominant_color[1:], 16)


def test_orientation_6_is_applied_to_size_and_renditions() -> None:
    result = process(read("gps-orient6.jpg"), SMALL)
    assert (result.info.width, result.info.height, result.info.orientation) == (48, 64, 6)
    largest = decoded(result.renditions[-1].data).convert("RGB")
    assert largest.size == (48, 64)
    # The red block of the stored top-left corner is top-right once turned upright.
    red, green, _ = largest.getpixel((44, 4))  # type: ignore[misc]
    assert red > 200 and green < 60
    red, _, _ = largest.getpixel((4, 4))  # type: ignore[misc]
    assert red < 100


@pytest.mark.parametrize("name", ["gps-orient6.jpg", "gps.png", "gps.webp", "gps.heic", "gps.avif"])
def test_location_leaves_the_original_and_pixels_and_allowlisted_exif_stay(name: str) -> None:
    data = read(name)
    before = decoded(data)
    assert before.getexif().get_ifd(0x8825)  # the fixture has a location

    result = process(data, SMALL)
    after = decoded(result.original)

    assert after.tobytes() == before.tobytes()  # pixels identical, not re-encoded
    assert after.size == before.size and after.mode == before.mode
    exif = after.getexif()
    assert 0x8825 not in exif
    assert exif.get_ifd(0x8825) == {}
    assert exif[0x010F] == "FixtureCam"  # Make
    assert exif[0x0110] == "Phone 1"  # Model
    sub = exif.get_ifd(0x8769)
    assert sub[0x9003] == "2024:05:01 13:45:10"  # DateTimeOriginal
    assert float(sub[0x829A]) == pytest.approx(1 / 250)  # ExposureTime
    assert float(sub[0x829D]) == pytest.approx(1.8)  # FNumber
    for marker in (b"GPSLatitude", b"GPSLongitude", b"Berlin"):
        assert marker not in result.original
    assert result.taken_at == "2024-05-01T13:45:10+02:00"
    # idempotent: rebuilding the rebuilt original changes nothing
    assert rebuild(result.original, result.info.content_type) == result.original


def test_orientation_tag_stays_in_the_original() -> None:
    result = process(read("gps-orient6.jpg"), SMALL)
    assert decoded(result.original).getexif()[0x0112] == 6


def test_png_text_chunks_are_dropped() -> None:
    """Allowlist, not denylist: a text chunk is not a rendering chunk, whatever it says."""
    data = read("gps.png")
    assert decoded(data).info.get("Comment") == "kept"
    result = process(data, SMALL)
    assert "Comment" not in decoded(result.original).info
    assert b"tEXt" not in result.original and b"iTXt" not in result.original


@pytest.mark.parametrize(
    "name", ["cmyk.jpg", "rgb16.png", "p3.jpg", "animated.gif", "animated.png", "animated.webp"]
)
def test_original_without_metadata_keeps_its_pixels_and_icc(name: str) -> None:
    data = read(name)
    original = process(data, SMALL).original
    before, after = decoded(data), decoded(original)
    assert after.tobytes() == before.tobytes() and after.mode == before.mode
    assert after.info.get("icc_profile") == before.info.get("icc_profile")
    assert rebuild(original, sniff(data) or "") == original
    if name != "animated.webp":  # every part kept in order: the input itself, not a copy
        assert original is data


def test_taken_at_is_none_without_exif() -> None:
    assert process(read("cmyk.jpg"), SMALL).taken_at is None


def test_cmyk_jpeg_renditions_are_rgb() -> None:
    source = decoded(read("cmyk.jpg")).convert("RGB")
    rendition = decoded(process(read("cmyk.jpg"), SMALL).renditions[-1].data)
    assert rendition.mode == "RGB"
    # same picture: the corner block, converted the same way
    expected = source.getpixel((2, 2))
    actual = rendition.getpixel((2, 2))
    assert all(abs(a - b) < 25 for a, b in zip(actual, expected, strict=True))  # type: ignore[arg-type]


def test_16_bit_png_is_scaled_not_clipped() -> None:
    rendition = decoded(process(read("rgb16.png"), SMALL).renditions[-1].data).convert("RGB")
    red, green, blue = rendition.getpixel((rendition.width - 2, rendition.height - 2))  # type: ignore[misc]
    assert red > 200 and green > 200 and 130 < blue < 180  # 40000/65535 * 255 = 156


def test_display_p3_is_converted_to_srgb() -> None:
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(read("display-p3.icc")))
    srgb = ImageCms.createProfile("sRGB")
    pixel = Image.new("RGB", (1, 1), (200, 100, 50))
    expected = ImageCms.profileToProfile(pixel, p3, srgb).getpixel((0, 0))  # type: ignore[union-attr]
    assert expected != (200, 100, 50)
    rendition = decoded(process(read("p3.jpg"), SMALL).renditions[-1].data)
    actual = rendition.getpixel((20, 15))
    assert all(abs(a - b) <= 6 for a, b in zip(actual, expected, strict=True))  # type: ignore[arg-type]
    assert "icc_profile" not in rendition.info


def test_alpha_is_kept() -> None:
    rendition = decoded(process(read("gps.png"), SMALL).renditions[-1].data)
    assert rendition.mode == "RGBA"
    low, high = rendition.getchannel("A").getextrema()  # type: ignore[misc]
    assert low < 60 and high > 200


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp", "animated.png"])
def test_animation_rendition_is_its_first_frame(name: str) -> None:
    source = Image.open(io.BytesIO(read(name)))
    first = source.convert("RGB")
    source.seek(4)
    middle = source.convert("RGB")
    rendition = decoded(process(read(name), SMALL).renditions[-1].data).convert("RGB")

    def distance(a: Image.Image, b: Image.Image) -> float:
        pairs = zip(a.tobytes(), b.tobytes(), strict=True)
        return sum(abs(x - y) for x, y in pairs) / (a.width * a.height * 3)

    assert distance(rendition, first) < distance(rendition, middle) / 2


@pytest.mark.parametrize("name", ["truncated.gif", "truncated.webp", "truncated.png"])
def test_truncated_animation_is_415(name: str) -> None:
    """The rebuild walks every chunk or block, so a cut is found before decoding."""
    data = read(name)
    for call in (probe, process):
        with pytest.raises(UnsupportedImageError, match=r"^image: not a decodable image"):
            call(data, DEFAULT, "image")


def test_truncated_still_is_415() -> None:
    data = read("gps.webp")
    with pytest.raises(UnsupportedImageError):
        process(data[: len(data) // 2], DEFAULT)
    jpeg = _jpeg((400, 300))
    with pytest.raises(UnsupportedImageError):
        process(jpeg[: len(jpeg) * 2 // 3], DEFAULT)


BOMBS = {
    "bomb.jpg": "10000x10000 pixels",
    "bomb.png": "10000x10000 pixels",
    "bomb.gif": "10000x10000 pixels",
    "bomb.heic": "10000x10000 pixels",
    "bomb.avif": "10000x10000 pixels",
    "bomb.webp": "7071x7071 pixels, RGBA",
    "bomb-frames.gif": "400 frames",
    "bomb-frames.webp": "400 frames",
    "bomb-frames.png": "3000 frames",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_are_413_from_the_header(name: str) -> None:
    data = read(name)
    for call in (probe, process):
        with pytest.raises(PayloadTooLargeError, match=r"^file: ") as raised:
            call(data, DEFAULT)
        assert BOMBS[name] in str(raised.value)
    assert len(data) < 20_000


_MEASURE = """
import json, sys, tracemalloc
from pathlib import Path
from chalicelib.errors import PayloadTooLargeError
from chalicelib.imaging import ImageLimits, process
limits = ImageLimits(50 << 20, 50_000_000, 256 << 20, 300, (320, 640, 1080))
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
process(Path(sys.argv[1], "gps.heic").read_bytes(), limits)  # warm up every plugin
out = {}
for name in sys.argv[2:]:
    data = Path(sys.argv[1], name).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS
    base = hwm()
    tracemalloc.start()
    try:
        process(data, limits)
        status = "accepted"
    except PayloadTooLargeError:
        status = "413"
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out[name] = {"status": status, "rss": hwm() - base, "traced": traced}
print(json.dumps(out))
"""


def test_bombs_peak_memory_stays_far_under_max_decode_bytes() -> None:
    """Peak RSS growth (VmHWM, reset before each case) and Python allocations while
    each bomb is refused, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(FIXTURES), *sorted(BOMBS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured: dict[str, dict[str, Any]] = json.loads(result.stdout)
    budget = DEFAULT.max_decode_bytes // 64  # 4 MiB
    for name, figures in measured.items():
        assert figures["status"] == "413", name
        assert figures["rss"] < budget, (name, figures)
        assert figures["traced"] < budget, (name, figures)


def test_an_animation_counts_its_frames_in_work_not_in_memory() -> None:
    """The 4000x4000 canvas of 10 frames holds one canvas at a time: within
    ``MAX_DECODE_BYTES``; its 160 M pixels of work are over a smaller
    ``MAX_DECODED_PIXELS``."""
    data = read("bomb-decode-bytes.gif")
    assert probe(data, DEFAULT).frames == 10
    work = ImageLimits(50 * MIB, 50_000_000, 256 * MIB, 300, (16,), max_decoded_pixels=10**8)
    with pytest.raises(PayloadTooLargeError, match="160000000 pixels to decode"):
        probe(data, work)


def test_an_ordinary_animated_gif_is_accepted_under_the_defaults() -> None:
    """80 frames of 800x600, a three-second clip."""
    frames = [Image.new("P", (800, 600), index % 16) for index in range(80)]
    for frame in frames:
        frame.putpalette([channel for i in range(16) for channel in (i * 16, 255 - i * 16, 90)])
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    result = process(buffer.getvalue(), DEFAULT)
    assert (result.info.width, result.info.height, result.info.frames) == (800, 600, 80)


def test_frames_within_the_limit_are_accepted_and_counted() -> None:
    limits = ImageLimits(50 * MIB, 50_000_000, 256 * MIB, 8, (16,))
    assert process(read("animated.gif"), limits).info.frames == 8
    with pytest.raises(PayloadTooLargeError, match="8 frames, the limit is 7"):
        probe(read("animated.webp"), ImageLimits(50 * MIB, 50_000_000, 256 * MIB, 7, (16,)))


def test_limits_bytes_pixels_and_decode_bytes() -> None:
    data = read("gps.png")
    with pytest.raises(PayloadTooLargeError, match=r"^photo: the image is \d+ bytes"):
        probe(data, ImageLimits(len(data) - 1, 50_000_000, 256 * MIB, 300, (320,)), "photo")
    with pytest.raises(PayloadTooLargeError, match="40x30 pixels, the limit is 1199"):
        probe(data, ImageLimits(MIB, 1199, 256 * MIB, 300, (320,)))
    # RGBA: Pillow's image, and the premultiplied copy it resamples through
    with pytest.raises(PayloadTooLargeError, match="decoding it would hold 9600 bytes"):
        probe(data, ImageLimits(MIB, 50_000_000, 9599, 300, (320,)))
    with pytest.raises(PayloadTooLargeError, match="1200 pixels to decode, the limit is 1199"):
        probe(data, ImageLimits(MIB, 50_000_000, 9600, 300, (320,), max_decoded_pixels=1199))
    probe(data, ImageLimits(len(data), 1200, 9600, 1, (320,), 1200))  # exactly at every limit


@pytest.mark.parametrize(
    "data",
    [b"hello, I am plain text", b"\x00" * 64, b"RIFF\x10\x00\x00\x00WEBPVP8 ", b"GIF89a"],
)
def test_not_an_image_is_415(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError, match=r"^file: not a decodable image"):
        process(data, DEFAULT)


def test_empty_is_400() -> None:
    with pytest.raises(InvalidInputError, match=r"^image_base64: the image is empty") as raised:
        probe(b"", DEFAULT, "image_base64")
    assert type(raised.value) is InvalidInputError


def test_rendition_sizes_never_upscale() -> None:
    assert rendition_sizes(500, 375, (320, 640, 1080)) == [320, 500]
    assert rendition_sizes(375, 500, (320, 640, 1080)) == [320, 500]
    assert rendition_sizes(640, 480, (320, 640, 1080)) == [320, 640]
    assert rendition_sizes(4000, 3000, (320, 640, 1080)) == [320, 640, 1080]
    assert rendition_sizes(100, 80, (320, 640, 1080)) == [100]
    assert rendition_sizes(2000, 10, (320, 640, 1080)) == [320, 640, 1080]


def _jpeg(size: tuple[int, int], **options: Any) -> bytes:
    image = Image.radial_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, **options)
    return buffer.getvalue()


def test_500px_image_gets_two_renditions() -> None:
    result = process(_jpeg((500, 375)), DEFAULT)
    assert [(r.size, r.width, r.height) for r in result.renditions] == [
        (320, 320, 240),
        (500, 500, 375),
    ]


def test_12_megapixel_jpeg_gets_the_three_sizes() -> None:
    result = process(_jpeg((4000, 3000)), DEFAULT)
    assert [(r.size, r.width, r.height) for r in result.renditions] == [
        (320, 320, 240),
        (640, 640, 480),
        (1080, 1080, 810),
    ]
    for rendition in result.renditions:
        assert decoded(rendition.data).size == (rendition.width, rendition.height)


def test_palette_grey_and_grey_alpha_modes() -> None:
    for mode in ("P", "L", "LA", "1", "I;16"):
        image = Image.new("RGB", (50, 40), (90, 160, 30)).convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        result = process(buffer.getvalue(), SMALL)
        rendition = decoded(result.renditions[-1].data)
        assert rendition.mode in ("RGB", "RGBA"), mode
        assert rendition.size == (50, 40)


@pytest.mark.filterwarnings("ignore:Truncated File Read")
def test_only_domain_errors_leave_on_corrupt_bytes() -> None:
    rng = random.Random(11)
    names = ["gps-orient6.jpg", "gps.png", "gps.webp", "gps.heic", "gps.avif", "animated.gif"]
    for name in names:
        data = read(name)
        for _ in range(15):
            corrupt = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
            cut = corrupt[: rng.randint(1, len(corrupt))] if rng.random() < 0.3 else corrupt
            try:
                process(bytes(cut), SMALL)
            except ImageServiceError as exc:
                assert str(exc).startswith("file: ")


def test_importing_the_module_does_not_import_pillow() -> None:
    code = (
        "import sys, chalicelib.imaging; print('PIL' in sys.modules, 'pillow_heif' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_limits_from_settings() -> None:
    settings = Settings("b", "t", "s" * 32, max_animation_frames=7, rendition_sizes=(640, 320))
    limits = ImageLimits.from_settings(settings)
    assert limits.max_animation_frames == 7
    assert limits.rendition_sizes == (320, 640)
    assert limits.max_decode_bytes == settings.max_decode_bytes


def test_jpeg_secondary_images_with_their_own_exif_are_dropped() -> None:
    """An MPO-style file (phones append depth maps and previews after the primary
    image's EOI, each with EXIF and GPS): the trailer goes, the primary stays as is."""
    primary = read("gps-orient6.jpg")
    secondary = _jpeg((32, 24), exif=Image.open(io.BytesIO(primary)).getexif().tobytes())
    data = primary + secondary
    original = process(data, SMALL).original

    assert original == process(primary, SMALL).original
    assert original.count(b"Exif\x00\x00") == 1
    assert decoded(original).tobytes() == decoded(primary).tobytes()


def test_heif_metadata_that_cannot_be_rewritten_in_place_is_reencoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback when the EXIF item is laid out so it cannot be overwritten in place
    (simulated: no item found): the location still goes, at the cost of re-encoding."""
    from chalicelib.imaging import heif

    monkeypatch.setattr(heif, "items", lambda data: None)
    for name in ("gps.heic", "gps.avif"):
        data = read(name)
        result = process(data, SMALL)
        after = decoded(result.original)
        exif = after.getexif()
        assert exif.get_ifd(0x8825) == {}, name
        assert exif[0x010F] == "FixtureCam", name
        assert after.size == decoded(data).size
        assert b"Berlin" not in result.original


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "PNG", "WEBP", "JPEG"])
def test_orientation_6_in_every_format_that_carries_exif(fmt: str) -> None:
    """HEIC's encoder turns EXIF orientation into ``irot``, which libheif applies; the
    others keep the tag, which the renditions apply."""
    sys.path.insert(0, str(FIXTURES.parent))
    try:
        from generate_processing import camera_exif, pattern
    finally:
        sys.path.remove(str(FIXTURES.parent))
    buffer = io.BytesIO()
    pattern((64, 48)).save(buffer, fmt, exif=camera_exif(orientation=6).tobytes())
    result = process(buffer.getvalue(), SMALL)

    assert (result.info.width, result.info.height) == (48, 64)
    largest = decoded(result.renditions[-1].data).convert("RGB")
    assert largest.size == (48, 64)
    red, green, _ = largest.getpixel((44, 4))  # type: ignore[misc]
    assert red > 200 and green < 60


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp", "animated.png"])
def test_an_animation_cut_anywhere_before_its_end_is_415(name: str) -> None:
    """Every frame is decoded, so a cut in any frame is found (the last 12 bytes are
    PNG's IEND chunk and GIF's trailer, after the last pixel)."""
    data = read(name)
    limits = ImageLimits(MIB, 50_000_000, 256 * MIB, 300, (16,))
    for cut in range(16, len(data) - 12, max(1, len(data) // 60)):
        with pytest.raises(UnsupportedImageError):
            process(data[:cut], limits)
