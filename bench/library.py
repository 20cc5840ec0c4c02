"""A real library through ``make run``'s stack: does the emulator's cost stay flat?

Starts ``python -m scripts.run_local`` (moto's server, the upload event delivery,
``chalice local``) on free ports, exactly as ``make run`` does, and uploads
``--library-images`` (default 5,000) tiny distinct PNGs with ``POST /images`` (JSON,
base64) from ``--library-clients`` (default 4) parallel clients. After every
:data:`WINDOW` uploads it reads the emulator's resident set (``VmRSS`` of the moto
server's pid, from the banner ``make run`` prints). Reported: the upload rate and the
emulator's RSS over the first and the last window, and their ratios (target: both
within :data:`MAX_DRIFT`x), and the emulator's CPU time per upload in each window
(what the rate would be on an idle machine: a shared machine's load moves the rate, not
this). Before ``scripts/moto_patches.py``, each upload's
transaction deep-copied the whole table: the rate fell and the RSS grew with every
image stored.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from scripts.emulator import PROJECT_DIR, free_port, wait_for_port

#: Uploads per measured window (the first and the last are compared).
WINDOW = 500
#: Target: last window's rate and RSS within this factor of the first's.
MAX_DRIFT = 1.2
BANNER = re.compile(r"Image service API: (?P<api>http://\S+) .*\(moto server, pid (?P<pid>\d+)\)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's flags on ``bench.run``'s command line."""
    parser.add_argument(
        "--library-images",
        type=int,
        default=5000,
        help=f"uploads through make run's stack (at least 2 x {WINDOW}; 0 skips)",
    )
    parser.add_argument("--library-clients", type=int, default=4, help="parallel clients")


def tiny_png(number: int) -> bytes:
    """A distinct 8x8 PNG (its colour encodes ``number``), ~80 bytes."""
    colour = (number % 256, (number // 256) % 256, (number // 65536) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used, in seconds (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait_for_banner(log: Path, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = BANNER.search(log.read_text(errors="replace"))
        if match:
            return match
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"make run's stack did not start:\n{log.read_text(errors='replace')}")


def measure_library(images: int, clients: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Upload ``images`` images through a fresh ``make run`` stack (see module doc).

    Returns:
        ``{"images", "clients", "window", "windows": [{"uploaded", "seconds", "rate",
        "rss_bytes", "emulator_cpu_ms"}], "first", "last", "rate_ratio", "rss_ratio",
        "cpu_ratio", "rss_growth_ratio", "failures"}``; rates in uploads per second,
        ``emulator_cpu_ms`` the moto server's CPU milliseconds per upload;
        ``rate_ratio`` first / last, the other ratios last / first.

    Raises:
        RuntimeError: the stack did not start, or more than 1% of uploads failed.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "run_local.log"
        env = {"RUN_LOCAL_STATE": str(Path(tmp) / "state.json")}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "scripts.run_local", "--port", str(port)],
                cwd=PROJECT_DIR,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(port, process, timeout=120)
            banner = _wait_for_banner(log, process)
            return _upload(banner["api"], int(banner["pid"]), images, clients, progress)
        finally:
            process.send_signal(signal.SIGINT)  # , as a user stops make run
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _upload(
    api: str, moto_pid: int, images: int, clients: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    local = threading.local()
    failures: list[str] = []

    def upload(number: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = {
            "image_base64": base64.b64encode(tiny_png(number)).decode(),
            "filename": f"library-{number}.png",
            "user_id": f"reader{number % 7}",
            "tags": ["library", f"shelf{number % 20}"],
            "title": f"Library image {number}",
        }
        answer = session.post(f"{api}/images", json=body, timeout=120)
        if answer.status_code != 201:
            failures.append(f"{number}: {answer.status_code} {answer.text[:120]}")

    windows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, clients)) as pool:
        for start in range(0, images, WINDOW):
            count = min(WINDOW, images - start)
            began, cpu = time.perf_counter(), cpu_seconds(moto_pid)
            list(pool.map(upload, range(start, start + count)))
            seconds = time.perf_counter() - began
            cpu_ms = (cpu_seconds(moto_pid) - cpu) * 1000 / count
            windows.append(
                {
                    "uploaded": start + count,
                    "seconds": seconds,
                    "rate": count / seconds,
                    "rss_bytes": rss_bytes(moto_pid),
                    "emulator_cpu_ms": cpu_ms,
                }
            )
            progress(
                f"library: {start + count} uploaded, {count / seconds:.1f}/s, "
                f"emulator RSS {windows[-1]['rss_bytes'] / 2**20:.0f} MiB, "
                f"CPU {cpu_ms:.1f} ms per upload"
            )
    if len(failures) > images // 100:
        raise RuntimeError(f"{len(failures)} of {images} uploads failed: {failures[:3]}")
    first, last = windows[0], windows[-1]
    return {
        "images": images,
        "clients": clients,
        "window": WINDOW,
        "windows": windows,
        "first": first,
        "last": last,
        "rate_ratio": first["rate"] / last["rate"],
        "rss_ratio": last["rss_bytes"] / first["rss_bytes"],
        "cpu_ratio": last["emulator_cpu_ms"] / first["emulator_cpu_ms"],
        "rss_growth_ratio": rss_growth_ratio(windows),
        "failures": len(failures),
    }


def rss_growth_ratio(windows: list[dict[str, Any]]) -> float:
    """The emulator's RSS growth per upload over the last window, as a multiple of that
    over the second (the first also holds the emulator's warm-up): 1.0 when each upload
    costs the same memory however many came before (the data it stores), more when an
    upload's cost grows with the library (moto's table copies did)."""
    second = int(windows[1]["rss_bytes"]) - int(windows[0]["rss_bytes"])
    last = int(windows[-1]["rss_bytes"]) - int(windows[-2]["rss_bytes"])
    return last / max(second, 1)


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any] | None:
    """The section for ``bench.run`` (None when ``--library-images 0``)."""
    if args.library_images <= 0:
        return None
    images = max(args.library_images, 2 * WINDOW)
    progress(f"library: {images} uploads through make run's stack, {args.library_clients} clients")
    return measure_library(images, args.library_clients, progress)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The two targets: rate and emulator RSS, last window within MAX_DRIFT of the first."""
    library = results.get("library")
    if not library:
        return []
    first, last = library["first"], library["last"]
    window = library["window"]
    return [
        {
            "target": f"library: upload rate of the last {window} within {MAX_DRIFT}x of the "
            f"first {window} ({library['images']} uploads through make run)",
            "passed": library["rate_ratio"] <= MAX_DRIFT,
            "measured": f"{first['rate']:.1f}/s then {last['rate']:.1f}/s: "
            f"{library['rate_ratio']:.2f}x (emulator CPU per upload "
            f"{first['emulator_cpu_ms']:.1f} then {last['emulator_cpu_ms']:.1f} ms: "
            f"{library['cpu_ratio']:.2f}x)",
        },
        {
            "target": f"library: emulator memory per upload (RSS growth over a window of "
            f"{window}) of the last window within {MAX_DRIFT}x of the second's",
            "passed": library["rss_growth_ratio"] <= MAX_DRIFT,
            "measured": f"{library['rss_growth_ratio']:.2f}x",
        },
        {
            "target": f"library: emulator RSS after the last {window} within {MAX_DRIFT}x of "
            f"after the first {window} (the library itself is held in memory)",
            "passed": library["rss_ratio"] <= MAX_DRIFT,
            "measured": f"{first['rss_bytes'] / 2**20:.0f} MiB then "
            f"{last['rss_bytes'] / 2**20:.0f} MiB: {library['rss_ratio']:.2f}x",
        },
    ]


def render(library: dict[str, Any] | None) -> list[str]:
    """The section's Markdown (nothing when it did not run)."""
    if not library:
        return []
    lines = [
        "## A library through `make run`: the emulator's cost per upload",
        "",
        f"{library['images']} tiny PNGs by `POST /images` from {library['clients']} clients "
        f"through `make run`'s stack (moto server, chalice local); per window of "
        f"{library['window']} uploads: the rate and the moto server's RSS after it. "
        f"{library['failures']} failed.",
        "",
        "| uploaded | uploads/s | emulator CPU per upload (ms) | emulator RSS (MiB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {w['uploaded']} | {w['rate']:.1f} | {w['emulator_cpu_ms']:.1f} "
        f"| {w['rss_bytes'] / 2**20:.0f} |"
        for w in library["windows"]
    ]
    lines.append("")
    return lines
