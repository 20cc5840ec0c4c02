"""The decode budget is what decoding really holds: peak RSS of a fresh child process
processing the worst case of each format and mode (an image sized so that its budget,
:func:`chalicelib.imaging.budget.held_bytes`, fills a small ``MAX_DECODE_BYTES``) stays
under that budget plus the input's two copies (upload and rebuilt original) plus a fixed
overhead; four worst cases processed at once stay under 4 x ``MAX_DECODE_BYTES`` above
the idle process. A 306 KB PNG whose iTXt inflates to 300 MiB costs neither memory nor
time (the chunk is left behind, never inflated).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

from chalicelib.imaging import ImageLimits, _inspect, budget
from chalicelib.imaging.header import read_header

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
#: The small budget the worst cases fill, bytes.
BUDGET = 16 * MIB
#: What processing holds besides the budget and the input's copies: the interpreter's
#: allocations, the 64 px rendition and its encoder, libraries' buffers.
OVERHEAD = 8 * MIB
LIMITS = ImageLimits(1 << 30, 8_000_000, BUDGET, 300, (64,))
UNBOUNDED = ImageLimits(1 << 30, 1 << 30, 1 << 40, 300, (64,))

CASES = [
    "JPEG:RGB", "JPEG:RGB:prog", "JPEG:L", "JPEG:CMYK", "JPEG:CMYK:prog",
    "PNG:RGB", "PNG:RGBA", "PNG:LA", "PNG:L", "PNG:I;16", "PNG:1", "PNG:P", "PNG:Ptrns",
    "PNG:RGBA:anim", "GIF:P", "GIF:P:anim", "WEBP:RGB", "WEBP:RGBA", "WEBP:RGBA:anim",
    "HEIF:RGB", "AVIF:RGB",
]  # fmt: skip

_CHILD = """
import json, sys, threading
from pathlib import Path
from chalicelib.imaging import ImageLimits, process
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
limits = ImageLimits(1 << 30, 8_000_000, int(sys.argv[1]), 300, (64,))
files = [Path(name) for name in sys.argv[2:]]
for name in files:  # warm up each plugin on a small image of the same kind
    process(Path(str(name) + ".small").read_bytes(), limits)
inputs = [name.read_bytes() for name in files]
Path("/proc/self/clear_refs").write_text("5")  # reset the peak
base = hwm()
threads = [threading.Thread(target=process, args=(data, limits)) for data in inputs]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"grew": hwm() - base}))
"""


def _smooth(size: tuple[int, int], mode: str) -> Image.Image:
    """A cheap-to-encode image of ``mode`` (noise upscaled: compresses well)."""
    small = Image.effect_noise((max(2, size[0] // 64), max(2, size[1] // 64)), 60).convert("L")
    grey = small.resize(size, Image.Resampling.BILINEAR)
    if mode == "L":
        return grey
    if mode == "1":
        return grey.convert("1")
    if mode == "I;16":
        return grey.convert("I").point(lambda value: value * 257).convert("I;16")
    flip = Image.Transpose
    rgb = Image.merge(
        "RGB", (grey, grey.transpose(flip.FLIP_LEFT_RIGHT), grey.transpose(flip.FLIP_TOP_BOTTOM))
    )
    if mode == "RGBA":
        return Image.merge("RGBA", (*rgb.split(), grey))
    if mode == "LA":
        return Image.merge("LA", (grey, grey.transpose(flip.ROTATE_180)))
    if mode == "CMYK":
        return rgb.convert("CMYK")
    if mode in ("P", "Ptrns"):
        return rgb.quantize(64)
    return rgb


def _make(case: str, size: tuple[int, int]) -> bytes:
    fmt, mode, *extra = case.split(":")
    image = _smooth(size, mode)
    options: dict[str, object] = {"transparency": 0} if mode == "Ptrns" else {}
    if "prog" in extra:
        options["progressive"] = True
    if "anim" in extra:
        options.update(save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)])
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _held(data: bytes) -> int:
    info, rebuilt, draft = _inspect(data, UNBOUNDED, "file")
    return budget.held_bytes(read_header(rebuilt, info.content_type), info.content_type, draft)


def worst_case(case: str, folder: Path) -> tuple[Path, int, int]:
    """(file, its budget, its bytes): ``case`` sized so its budget fills :data:`BUDGET`
    (or its pixels :data:`LIMITS`' ``max_image_pixels``), and a small one beside it."""
    pillow_heif.register_heif_opener()
    small = _make(case, (400, 300))
    pixels = min(int(BUDGET / (_held(small) / 120_000)) * 99 // 100, LIMITS.max_image_pixels)
    width = int((pixels * 4 / 3) ** 0.5)
    data = _make(case, (width, pixels // width))
    path = folder / case.replace(":", "_").replace(";", "_")
    path.write_bytes(data)
    Path(f"{path}.small").write_bytes(small)
    return path, _held(data), len(data)


def _grew(files: list[Path]) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(BUDGET), *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grew: int = json.loads(result.stdout)["grew"]
    return grew


@pytest.fixture(scope="module")
def worst_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, int]]:
    folder = tmp_path_factory.mktemp("worst")
    return {case: worst_case(case, folder) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_peak_rss_of_the_worst_case_stays_within_its_budget(
    case: str, worst_cases: dict[str, tuple[Path, int, int]]
) -> None:
    path, held, size = worst_cases[case]
    assert held <= BUDGET
    grew = _grew([path])
    print(f"{case}: budget {held / MIB:.1f} MiB, peak +{grew / MIB:.1f} MiB")
    assert grew <= held + 2 * size + OVERHEAD, (case, grew, held, size)


def test_four_worst_cases_at_once_stay_under_four_budgets(
    worst_cases: dict[str, tuple[Path, int, int]],
) -> None:
    """The four most expensive kinds of the issue (RGBA, LA, 16-bit grey PNG, WebP),
    processed in four threads of one process."""
    files = [worst_cases[case][0] for case in ("PNG:RGBA", "PNG:LA", "PNG:I;16", "WEBP:RGBA")]
    grew = _grew(files)
    print(f"four at once: peak +{grew / MIB:.1f} MiB, 4 x budget {4 * BUDGET / MIB:.0f} MiB")
    assert grew < 4 * BUDGET + OVERHEAD


def _inflating_png(inflated: int) -> bytes:
    """A 1x1 PNG with an iTXt XMP chunk holding ``inflated`` bytes of deflated zeros."""
    zeros = zlib.compressobj(9)
    chunk = b"\x00" * MIB
    compressed = b"".join(zeros.compress(chunk) for _ in range(inflated // MIB)) + zeros.flush()
    body = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + compressed

    def png_chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    plain = buffer.getvalue()
    return plain[:33] + png_chunk(b"iTXt", body) + plain[33:]


def test_a_png_whose_itxt_inflates_to_300_mib_is_answered_quickly_and_small(
    tmp_path: Path,
) -> None:
    data = _inflating_png(300 * MIB)
    assert len(data) < 400_000
    path = tmp_path / "inflating.png"
    path.write_bytes(data)
    Path(f"{path}.small").write_bytes(_make("PNG:RGB", (40, 30)))
    started = time.perf_counter()
    grew = _grew([path])
    elapsed = time.perf_counter() - started
    print(f"300 MiB iTXt: peak +{grew / MIB:.1f} MiB in {elapsed:.1f} s (child included)")
    assert grew < 2 * len(data) + OVERHEAD
