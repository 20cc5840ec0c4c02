"""Cost per image: the WebP encoder's ``method`` (effort, 0-6) against CPU, bytes and
quality, to choose ``chalicelib.imaging.renditions.WEBP_METHOD``.

For each input of ``bench/imaging.py`` but the GIF (12 MP JPEG, 24 MP PNG, 12 MP HEIC)
and each method 2..6: ``imaging.process`` with that method (everything the service
does per upload), its CPU seconds (``time.process_time``, this process; median of
``runs`` calls, one for the PNG and the HEIC), the renditions' bytes, and their SSIM
against the full-resolution source (decoded, EXIF orientation applied) downscaled to
each rendition's size with the filter the pipeline uses (Lanczos): mean SSIM of the
three renditions, on luminance, Gaussian window sigma 1.5 (Wang et al. 2004). The
resampling is the same for every method, so differences between methods are the
encoder's.

``python -m bench.webp_method [SCALE]`` runs it alone (``SCALE`` shrinks the inputs'
sides, e.g. 0.25 for a smoke run); ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from typing import Any
from unittest import mock

import numpy as np
from numpy.typing import NDArray

from bench.imaging import CASES, SIZES, Case

METHODS = (2, 3, 4, 5, 6)
#: SSIM's constants for 8-bit samples: (0.01 * 255)^2 and (0.03 * 255)^2.
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_SIGMA = 1.5
_RADIUS = 5


def _gaussian(plane: NDArray[np.float64]) -> NDArray[np.float64]:
    """``plane`` blurred by a separable Gaussian (sigma 1.5, 11 taps), edges reflected."""
    taps = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2 * _SIGMA**2))
    kernel /= kernel.sum()
    padded = np.pad(plane, _RADIUS, mode="reflect")
    rows = sum(w * padded[:, k : k + plane.shape[1]] for k, w in enumerate(kernel))
    out: NDArray[np.float64] = sum(
        w * rows[k : k + plane.shape[0], :] for k, w in enumerate(kernel)
    )
    return out


def ssim(reference: Any, candidate: Any) -> float:
    """Mean SSIM of two same-size Pillow images, on luminance (ITU-R 601 ``L``)."""
    x = np.asarray(reference.convert("L"), dtype=np.float64)
    y = np.asarray(candidate.convert("L"), dtype=np.float64)
    mu_x, mu_y = _gaussian(x), _gaussian(y)
    var_x = _gaussian(x * x) - mu_x**2
    var_y = _gaussian(y * y) - mu_y**2
    cov = _gaussian(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    )
    return float(index.mean())


def _source(data: bytes) -> Any:
    """The full-resolution image as the pipeline sees it: decoded, orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _measure(case: Case, data: bytes, runs: int) -> dict[str, Any]:
    from PIL import Image

    from chalicelib import imaging
    from chalicelib.imaging import renditions

    limits = imaging.ImageLimits(512 << 20, 100_000_000, 1 << 30, 300, SIZES)
    imaging.process(data, limits)  # plugins and first-call costs out of the timing
    source = _source(data)
    methods = []
    for method in METHODS:
        cpu = []
        with mock.patch.object(renditions, "WEBP_METHOD", method):
            for _ in range(runs if case.every_run else 1):
                began = time.process_time()
                result = imaging.process(data, limits)
                cpu.append(time.process_time() - began)
        scores = []
        for rendition in result.renditions:
            reference = source.resize((rendition.width, rendition.height), Image.Resampling.LANCZOS)
            with Image.open(io.BytesIO(rendition.data)) as encoded:
                scores.append(ssim(reference, encoded))
        methods.append(
            {
                "method": method,
                "cpu_s": statistics.median(cpu),
                "bytes": sum(len(r.data) for r in result.renditions),
                "ssim": statistics.fmean(scores),
            }
        )
    return {"label": case.label, "bytes": len(data), "methods": methods}


def measure_webp_methods(runs: int = 3, scale: float = 1.0) -> dict[str, Any]:
    """``{"runs", "rows": [{"label", "bytes", "methods": [{"method", "cpu_s", "bytes",
    "ssim"}]}]}`` for the still inputs of ``bench/imaging.py``."""
    from chalicelib.imaging import renditions

    rows = [_measure(case, case.make(scale), runs) for case in CASES if case.suffix != ".gif"]
    return {"runs": runs, "current": renditions.WEBP_METHOD, "rows": rows}


def render(measured: dict[str, Any]) -> list[str]:
    """The report's Markdown section: per input and method, CPU, bytes and SSIM, each
    also relative to method 4 (libwebp's default)."""
    lines = [
        "## Cost per image: WebP `method` (encoder effort)",
        "",
        "`imaging.process` with each `method` (CPU seconds of this process, median of "
        f"{measured['runs']} calls, 1 for the PNG and the HEIC); bytes of the three "
        "renditions; SSIM (luminance, Gaussian sigma 1.5, mean of the three renditions) "
        "against the full-resolution source downscaled with Lanczos to each rendition's "
        f"size. The service uses method {measured['current']}.",
        "",
        "| image | method | CPU s | vs 4 | rendition bytes | vs 4 | SSIM | vs 4 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in measured["rows"]:
        base = next(m for m in row["methods"] if m["method"] == 4)
        for m in row["methods"]:
            lines.append(
                f"| {row['label']} | {m['method']} | {m['cpu_s']:.3f} | "
                f"{m['cpu_s'] / base['cpu_s']:.2f}x | {m['bytes']:,} | "
                f"{m['bytes'] / base['bytes']:.3f}x | {m['ssim']:.4f} | "
                f"{m['ssim'] - base['ssim']:+.4f} |"
            )
    return [*lines, ""]


if __name__ == "__main__":  # pragma: no cover - `python -m bench.webp_method` alone
    measured = measure_webp_methods(scale=float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    print("\n".join(render(measured)))
