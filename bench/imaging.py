"""Image processing against libvips: ``chalicelib.imaging.process`` and ``vipsthumbnail``
making the same WebP renditions from the same file.

Inputs, generated here (deterministic, photo-like: a gradient under noise): a 12 MP phone
JPEG (4032x3024, EXIF orientation 6 and a GPS IFD), a 24 MP PNG (6000x4000), a 12 MP HEIC
and an animated GIF (480x270, 60 frames); ``scale`` shrinks their sides for smoke runs.

Ours: ``process()`` in a fresh Python process (Pillow and plugins imported and warmed up
on a tiny image first), the median of ``runs`` calls; its peak RSS is the process's
``VmHWM``, reset just before the first timed call. It does everything the service does
per upload: every frame decoded, original rebuilt from its allowlisted parts, three WebP
renditions, BlurHash.
libvips: three ``vipsthumbnail -s SIZE`` runs (one per size, WebP Q=80, metadata
stripped), as the issue measured it; time is their sum (median of ``runs`` rounds), peak
RSS the largest of the three processes' ``ru_maxrss``. The ratio is ours / libvips.
When ``vipsthumbnail`` is not installed (Debian ``libvips-tools``; ``make bench-deps``)
that column is skipped with the reason.
"""

from __future__ import annotations

import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The issue's target: ours at most this times libvips' time, for the 12 MP JPEG.
MAX_JPEG_RATIO = 1.0
SIZES = (320, 640, 1080)


@dataclass(frozen=True)
class Case:
    """One input: a label, how to make its bytes at a given scale, and whether it gets
    every timed run (slow ones get one)."""

    label: str
    make: Callable[[float], bytes]
    suffix: str
    every_run: bool = True


def _photo(width: int, height: int) -> Any:
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((width, height))
    # Texture at a quarter of the resolution, upscaled: detail like a photo's, not the
    # incompressible per-pixel noise no camera delivers.
    texture = Image.effect_noise((max(1, width // 4), max(1, height // 4)), 50)
    noise = texture.convert("L").resize((width, height), Image.Resampling.BICUBIC)
    red = Image.blend(gradient, noise, 0.35)
    green = Image.blend(gradient.rotate(90).resize((width, height)), noise, 0.35)
    return Image.merge("RGB", (red, green, noise.point(lambda v: v // 2 + 60)))


def _side(value: int, scale: float) -> int:
    return max(16, round(value * scale))


def _jpeg(scale: float) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "BenchCam", "Phone", 6
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    buffer = io.BytesIO()
    _photo(_side(4032, scale), _side(3024, scale)).save(
        buffer, "JPEG", quality=90, exif=exif.tobytes()
    )
    return buffer.getvalue()


def _png(scale: float) -> bytes:
    buffer = io.BytesIO()
    _photo(_side(6000, scale), _side(4000, scale)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _heic(scale: float) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    _photo(_side(4032, scale), _side(3024, scale)).save(
        buffer, "HEIF", quality=60, enc_params={"preset": "ultrafast"}
    )
    return buffer.getvalue()


def _gif(scale: float) -> bytes:
    base = _photo(_side(480, scale), _side(270, scale)).quantize(64)
    frames = [base.rotate(index * 6) for index in range(60)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return buffer.getvalue()


CASES = (
    Case("12 MP JPEG", _jpeg, ".jpg"),
    Case("24 MP PNG", _png, ".png", every_run=False),
    Case("12 MP HEIC", _heic, ".heic", every_run=False),
    Case("animated GIF (60 frames)", _gif, ".gif"),
)

_WORKER = """
import io, json, sys, time
from pathlib import Path
from PIL import Image
from chalicelib.imaging import ImageLimits, process
limits = ImageLimits(512 << 20, 100_000_000, 1 << 30, 300, (320, 640, 1080))
buffer = io.BytesIO()
Image.new("RGB", (64, 48)).save(buffer, "JPEG")
process(buffer.getvalue(), limits)  # imports and plugin registration out of the timing
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")
times = []
for _ in range(int(sys.argv[2])):
    began = time.perf_counter()
    result = process(data, limits)
    times.append(time.perf_counter() - began)
hwm = next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
           if l.startswith("VmHWM:"))
shapes = [[r.size, r.width, r.height, len(r.data)] for r in result.renditions]
print(json.dumps({"times": times, "peak_rss": hwm, "renditions": shapes}))
"""


def _ours(path: Path, runs: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, str(path), str(runs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out: dict[str, Any] = json.loads(result.stdout)
    return {
        "seconds": statistics.median(out["times"]),
        "peak_rss_mib": out["peak_rss"] / 2**20,
        "renditions": out["renditions"],
    }


_VIPS_WORKER = """
import json, os, subprocess, sys, time
binary, path, out, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
times, peaks = [], []
for _ in range(rounds):
    total = 0.0
    for size in (320, 640, 1080):
        began = time.perf_counter()
        child = subprocess.Popen([binary, path, "-s", str(size), "-o",
                                  f"{out}-{size}.webp[Q=80,strip]"], stderr=subprocess.PIPE)
        error = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        total += time.perf_counter() - began
        if os.waitstatus_to_exitcode(status):
            print(json.dumps({"skipped": "vipsthumbnail failed: " + error.decode()[-300:]}))
            sys.exit(0)
        peaks.append(usage.ru_maxrss * 1024)
    times.append(total)
print(json.dumps({"times": times, "peak_rss": max(peaks)}))
"""


def _vips(binary: str, path: Path, runs: int, workdir: Path) -> dict[str, Any]:
    """Three ``vipsthumbnail`` runs per round, launched from a fresh, small Python
    process: Linux carries a parent's peak RSS into a child's ``ru_maxrss`` across
    fork and exec, and the benchmark's own process is large."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _VIPS_WORKER, binary, str(path),
         str(workdir / "vips"), str(runs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(result.stdout)
    if "skipped" in out:
        return out
    return {"seconds": statistics.median(out["times"]), "peak_rss_mib": out["peak_rss"] / 2**20}


def measure_imaging(runs: int = 3, scale: float = 1.0) -> dict[str, Any]:
    """Time and peak RSS of ours and of libvips per input; ``{"rows", "vips", ...}``."""
    binary = shutil.which("vipsthumbnail")
    vips_reason = None if binary else "vipsthumbnail not found (make bench-deps installs it)"
    version = None
    if binary:
        probe = subprocess.run([binary, "--version"], capture_output=True, text=True)
        version = (probe.stdout or probe.stderr).strip().splitlines()[0] if probe else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-imaging-") as tmp:
        workdir = Path(tmp)
        for case in CASES:
            data = case.make(scale)
            path = workdir / f"input{case.suffix}"
            path.write_bytes(data)
            case_runs = runs if case.every_run else 1
            row: dict[str, Any] = {"label": case.label, "bytes": len(data), "runs": case_runs}
            row["ours"] = _ours(path, case_runs)
            if binary:
                row["vips"] = _vips(binary, path, case_runs, workdir)
                if "seconds" in row["vips"]:
                    row["time_ratio"] = row["ours"]["seconds"] / row["vips"]["seconds"]
                    row["rss_ratio"] = row["ours"]["peak_rss_mib"] / row["vips"]["peak_rss_mib"]
            rows.append(row)
    return {
        "rows": rows,
        "vips_skipped": vips_reason,
        "vips_version": version,
        "runs": runs,
        "scale": scale,
    }


def render(imaging: dict[str, Any]) -> list[str]:
    """The report's Markdown section."""
    lines = [
        "## Image processing: `process()` against libvips' `vipsthumbnail`",
        "",
        "Ours: one `chalicelib.imaging.process` call (every frame decoded, original "
        "rebuilt, WebP 320/640/1080, BlurHash), median of "
        f"{imaging['runs']} runs (1 for the PNG and the HEIC); libvips: three "
        "`vipsthumbnail -s SIZE` runs (WebP Q=80, strip), summed. Peak RSS is the "
        "whole process's (ours includes the Python interpreter and Pillow).",
        "",
    ]
    if imaging.get("vips_skipped"):
        lines += [f"libvips column skipped: {imaging['vips_skipped']}", ""]
    elif imaging.get("vips_version"):
        lines += [f"libvips: `{imaging['vips_version']}`", ""]
    header = ["image", "bytes", "ours s", "ours peak RSS MiB", "vips s", "vips peak RSS MiB"]
    header += ["time ratio", "RSS ratio"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in imaging["rows"]:
        vips = row.get("vips") or {}
        cells = [
            row["label"],
            f"{row['bytes']:,}",
            f"{row['ours']['seconds']:.3f}",
            f"{row['ours']['peak_rss_mib']:.0f}",
            f"{vips['seconds']:.3f}" if "seconds" in vips else vips.get("skipped", "skipped"),
            f"{vips['peak_rss_mib']:.0f}" if "peak_rss_mib" in vips else "",
            f"{row['time_ratio']:.2f}x" if "time_ratio" in row else "n/a",
            f"{row['rss_ratio']:.2f}x" if "rss_ratio" in row else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def target(imaging: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's target (12 MP JPEG at most 1.0x libvips), or None without libvips."""
    jpeg = next((r for r in imaging["rows"] if r["label"] == "12 MP JPEG"), None)
    if jpeg is None or "time_ratio" not in jpeg:
        return None
    return {
        "target": f"12 MP JPEG processing <= {MAX_JPEG_RATIO}x vipsthumbnail's three sizes",
        "passed": jpeg["time_ratio"] <= MAX_JPEG_RATIO,
        "measured": f"{jpeg['time_ratio']:.2f}x ({jpeg['ours']['seconds']:.3f} s vs "
        f"{jpeg['vips']['seconds']:.3f} s)",
    }


if __name__ == "__main__":  # pragma: no cover - `python -m bench.imaging` alone
    measured = measure_imaging(scale=float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    print("\n".join(render(measured)))
    print(json.dumps(target(measured)))
