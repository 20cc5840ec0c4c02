"""``bench/library.py``'s figures from synthetic windows (the 5,000 uploads themselves
run in ``make bench``; ``measure_library`` is exercised there)."""

from __future__ import annotations

import os
from typing import Any

from bench import library

MIB = 2**20


def result(rss_mib: list[int], rates: list[float]) -> dict[str, Any]:
    windows = [
        {"uploaded": 500 * (n + 1), "seconds": 500 / rate, "rate": rate,
         "rss_bytes": rss * MIB, "emulator_cpu_ms": 1000 / rate}
        for n, (rss, rate) in enumerate(zip(rss_mib, rates, strict=True))
    ]  # fmt: skip
    first, last = windows[0], windows[-1]
    return {
        "images": 500 * len(windows), "clients": 4, "window": 500, "windows": windows,
        "first": first, "last": last, "rate_ratio": first["rate"] / last["rate"],
        "rss_ratio": last["rss_bytes"] / first["rss_bytes"],
        "cpu_ratio": last["emulator_cpu_ms"] / first["emulator_cpu_ms"],
        "rss_growth_ratio": library.rss_growth_ratio(windows), "failures": 0,
    }  # fmt: skip


def test_flat_costs_pass_and_a_cost_growing_with_the_library_misses() -> None:
    flat = library.evaluate({"library": result([112, 132, 152, 172], [22, 21, 22, 20])})
    assert [t["passed"] for t in flat] == [True, True, False]  # RSS holds the data itself
    assert "1.10x" in flat[0]["measured"] and flat[1]["measured"] == "1.00x"
    # Before scripts/moto_patches.py: every upload copied the table.
    copying = library.evaluate({"library": result([112, 300, 700, 1400], [22, 10, 5, 2])})
    assert [t["passed"] for t in copying] == [False, False, False]


def test_the_section_renders_every_window() -> None:
    lines = library.render(result([112, 132, 152], [22, 21, 20]))
    assert "| 1500 | 20.0 | 50.0 | 152 |" in lines
    assert library.render(None) == []


def test_the_emulator_is_measured_from_proc() -> None:
    assert library.rss_bytes(os.getpid()) > 10 * MIB
    assert library.cpu_seconds(os.getpid()) > 0
    assert library.tiny_png(1) != library.tiny_png(2)
