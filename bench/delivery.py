"""Delivery: what a browser downloads again, and whether URLs stay the same.

Against ``make run``'s own script (``scripts.run_local`` on moto's server), in headless
Chromium (Playwright driving Debian's ``/usr/bin/chromium``; skipped, with the reason,
when there is none):

1. **Reload**: open the gallery with ``--delivery-images`` images (40), wait until every
   tile shows its image, reload, wait again, scroll to the bottom and back to the top.
   Image bytes and requests are read from the DevTools protocol
   (``Network.loadingFinished``'s ``encodedDataLength``: what crossed the network; 0 when
   the browser's cache answered). Measured twice: with
   the default cache window (``URL_CACHE_WINDOW_SECONDS=3600``) and with a 1-second
   window, which is what the API did before (a new signature on every listing).
2. **Two instances**: the same listing computed in two separate Python processes
   (``ImageService.from_settings`` each) returns byte-identical URLs.
3. **Listing size**: JSON bytes per item of the listing, and of the same items with
   each URL presigned afresh by botocore (the former response).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from scripts.emulator import PROJECT_DIR, free_port, start_moto_server, wait_for_port
from scripts.run_local import stage_environment

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--delivery-images`` (40) and ``--skip-delivery``."""
    parser.add_argument("--delivery-images", type=int, default=40, help="gallery size")
    parser.add_argument("--skip-delivery", action="store_true")


@dataclass
class Transfer:
    """What one phase of a visit fetched for the bucket's URLs (images): requests made,
    bytes that crossed the network for them, and how many of them moved no byte (the
    browser's cache answered)."""

    requests: int = 0
    network_bytes: int = 0
    from_cache: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "network_bytes": self.network_bytes,
            "from_cache": self.from_cache,
        }


@dataclass
class NetworkLog:
    """DevTools ``Network`` events of one page, for URLs starting with ``origin``."""

    origin: str
    pending: set[str] = field(default_factory=set)
    current: Transfer = field(default_factory=Transfer)

    def on_response(self, event: dict[str, Any]) -> None:
        if event["response"]["url"].startswith(self.origin):
            self.pending.add(event["requestId"])
            self.current.requests += 1

    def on_finished(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self.pending:
            self.pending.discard(event["requestId"])
            received = int(event.get("encodedDataLength", 0))
            self.current.network_bytes += received
            self.current.from_cache += int(received == 0)

    def take(self) -> Transfer:
        """The transfer so far, and start a new one."""
        taken, self.current = self.current, Transfer()
        return taken


def find_chromium() -> str | None:
    """Debian's Chromium, when installed."""
    return str(CHROMIUM) if CHROMIUM.exists() else None


def wait_images_shown(page: Any, count: int) -> None:
    """Wait until ``count`` tiles show a decoded image."""
    page.wait_for_function(
        """(count) => {
            const images = [...document.querySelectorAll('#gallery .tile img')];
            const decoded = (img) => img.complete && img.naturalWidth > 0;
            return images.length === count && images.every(decoded);
        }""",
        arg=count,
        timeout=TIMEOUT * 1000,
    )


def visit_reload_scroll(
    browser: Any, url: str, bucket_origin: str, count: int, pause: float = 0.0
) -> dict[str, Any]:
    """Open ``url`` (a gallery of ``count`` images) in a fresh context, reload it (after
    ``pause`` seconds), scroll to the bottom and back; ``{phase: Transfer.to_json()}``
    for the bucket's URLs."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    session = context.new_cdp_session(page)
    log = NetworkLog(bucket_origin)
    session.on("Network.responseReceived", log.on_response)
    session.on("Network.loadingFinished", log.on_finished)
    session.send("Network.enable")
    phases: dict[str, Any] = {}
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT * 1000)
        wait_images_shown(page, count)
        page.wait_for_load_state("networkidle")
        phases["first_visit"] = log.take().to_json()
        time.sleep(pause)
        page.reload()
        page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT * 1000)
        wait_images_shown(page, count)
        page.wait_for_load_state("networkidle")
        phases["reload"] = log.take().to_json()
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_load_state("networkidle")
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_load_state("networkidle")
        phases["scroll_back"] = log.take().to_json()
    finally:
        context.close()
    return phases


def seed_images(base_url: str, user: str, count: int) -> None:
    """Upload ``count`` small distinct PNGs for ``user`` through ``POST /images``."""
    import io

    from PIL import Image

    for index in range(count):
        buffer = io.BytesIO()
        color = (index * 6 % 256, 255 - index * 5 % 256, 120)
        Image.new("RGB", (400, 300), color).save(buffer, "PNG")
        response = requests.post(
            f"{base_url}/images",
            data={"user_id": user, "title": f"delivery {index}"},
            files={"file": (f"d{index}.png", buffer.getvalue(), "image/png")},
            timeout=TIMEOUT,
        )
        response.raise_for_status()


@contextmanager
def run_local(endpoint_url: str, log_dir: Path, **env: str) -> Iterator[str]:
    """``python -m scripts.run_local`` on a free port against ``endpoint_url``; yields
    its base URL."""
    from tests.integration.support import start_run_local, stop_run_local

    port = free_port()
    log_path = log_dir / f"run_local-{port}.log"
    process = start_run_local(
        port, log_path, "--no-autoreload", AWS_ENDPOINT_URL=endpoint_url, **env
    )
    try:
        wait_for_port(port, process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_run_local(process)


_LIST_IN_A_PROCESS = """
import json, sys
from chalicelib.config import Settings
from chalicelib.service import ImageService
from chalicelib.validation import parse_list_query
service = ImageService.from_settings(Settings.from_env())
listing = service.list_images(parse_list_query({"user_id": [sys.argv[1]], "limit": ["100"]}))
print(json.dumps(listing))
"""


def listing_in_a_process(endpoint_url: str, user: str) -> dict[str, Any]:
    """``GET /images?user_id=USER&limit=100`` as a new process (a new "instance")
    computes it, with ``make run``'s settings."""
    from tests.integration.support import child_environment

    env = child_environment(**stage_environment("dev"), AWS_ENDPOINT_URL=endpoint_url)
    env["S3_PUBLIC_ENDPOINT_URL"] = endpoint_url
    result = subprocess.run(
        [sys.executable, "-c", _LIST_IN_A_PROCESS, user],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    listing: dict[str, Any] = json.loads(result.stdout)
    return listing


def urls_of(listing: dict[str, Any]) -> list[str]:
    """Every URL of a listing: each item's, then its renditions'."""
    return [
        url
        for item in listing["items"]
        for url in [item["url"], *(rendition["url"] for rendition in item["renditions"])]
    ]


def freshly_signed(listing: dict[str, Any], endpoint_url: str, bucket: str) -> dict[str, Any]:
    """The listing as the API answered before: every URL presigned by botocore now, with
    the service's client settings (SigV4, path style for the emulator)."""
    import boto3
    from botocore.config import Config

    from scripts.emulator import DUMMY_CREDENTIALS

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def sign(key: str) -> str:
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=900
        )
        return url

    items = [
        {
            **item,
            "url": sign(item["s3_key"]),
            "renditions": [{**r, "url": sign(r["s3_key"])} for r in item["renditions"]],
        }
        for item in listing["items"]
    ]
    return {**listing, "items": items}


def json_bytes_per_item(listing: dict[str, Any]) -> float:
    """Bytes of the listing's JSON (as the API encodes it) per item."""
    return len(json.dumps(listing).encode()) / max(1, len(listing["items"]))


def measure_delivery(images: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the three measurements (see the module docstring).

    Returns:
        ``{"skipped": reason}`` without Chromium or Playwright; else
        ``{"images", "windowed": {phase: transfer}, "per_request": {...},
        "two_processes_identical": bool, "listing_bytes_per_item": {"before", "after"}}``.
    """
    chromium = find_chromium()
    if chromium is None:
        return {"skipped": f"no Chromium at {CHROMIUM} (apt-get install chromium)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        return {"skipped": f"Playwright is not installed ({error})"}
    config = stage_environment("dev")
    user = f"delivery-{int(time.time())}"
    moto = start_moto_server()
    results: dict[str, Any] = {"images": images}
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            log_dir = Path(tmp)
            browser = playwright.chromium.launch(
                executable_path=chromium,
                args=[*CHROMIUM_ARGS, f"--disk-cache-dir={log_dir / 'cache'}"],
            )
            gallery = f"?user_id={user}&limit=100"
            with run_local(moto.endpoint_url, log_dir) as base_url:
                progress(f"delivery: seeding {images} images …")
                seed_images(base_url, user, images)
                progress("delivery: first visit, reload, scroll back (window 3600 s) …")
                results["windowed"] = visit_reload_scroll(
                    browser, f"{base_url}/{gallery}", moto.endpoint_url, images
                )
            with run_local(moto.endpoint_url, log_dir, URL_CACHE_WINDOW_SECONDS="1") as base_url:
                progress("delivery: the same with a 1 s window (a new URL per listing) …")
                # The reload falls in another 1 s window: new URLs, as every listing had.
                results["per_request"] = visit_reload_scroll(
                    browser, f"{base_url}/{gallery}", moto.endpoint_url, images, pause=1.0
                )
            browser.close()
        progress("delivery: the same listing from two processes …")
        first = listing_in_a_process(moto.endpoint_url, user)
        second = listing_in_a_process(moto.endpoint_url, user)
        results["two_processes_identical"] = urls_of(first) == urls_of(second)
        results["urls_compared"] = len(urls_of(first))
        before = freshly_signed(first, moto.endpoint_url, config["BUCKET_NAME"])
        results["listing_bytes_per_item"] = {
            "before": round(json_bytes_per_item(before), 1),
            "after": round(json_bytes_per_item(first), 1),
        }
    finally:
        moto.stop()
    return results


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's delivery targets: ``{"target", "passed", "measured"}`` each (none when
    the part did not run)."""
    measured = results.get("delivery") or {}
    if not measured or "skipped" in measured:
        return []
    reload = measured["windowed"]["reload"]
    per_request = measured["per_request"]["reload"]
    return [
        {
            "target": "gallery reload within the window transfers 0 image bytes",
            "passed": reload["network_bytes"] == 0,
            "measured": f"{reload['network_bytes']} B in {reload['requests']} requests "
            f"(a new URL per listing: {per_request['network_bytes']} B)",
        },
        {
            "target": "the same listing from two processes has byte-identical URLs",
            "passed": bool(measured["two_processes_identical"]),
            "measured": f"{measured['urls_compared']} URLs compared",
        },
    ]


def render(measured: dict[str, Any]) -> list[str]:
    """The Markdown section of ``make bench``'s report."""
    lines = ["## Delivery: a gallery reloaded in Chromium", ""]
    if "skipped" in measured:
        return [*lines, f"Skipped: {measured['skipped']}.", ""]
    lines += [
        f"{measured['images']} images (400x300 PNG, shown as their WebP rendition) in the "
        "gallery of `make run`'s script, headless Chromium; bytes are what crossed the "
        "network for image URLs (DevTools `encodedDataLength`; 0 = the browser's cache).",
        "",
        "| URLs | phase | image requests | image bytes | from the browser's cache |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, label in (
        ("windowed", "same for the window (3600 s)"),
        ("per_request", "new per listing (1 s window: as before)"),
    ):
        for phase in ("first_visit", "reload", "scroll_back"):
            row = measured[mode][phase]
            lines.append(
                f"| {label} | {phase.replace('_', ' ')} | {row['requests']} | "
                f"{row['network_bytes']} | {row['from_cache']} |"
            )
    sizes = measured["listing_bytes_per_item"]
    identical = "byte-identical" if measured["two_processes_identical"] else "**different**"
    lines += [
        "",
        f"- The same listing computed by two separate processes: {identical} "
        f"({measured['urls_compared']} URLs).",
        f"- Listing JSON per item: {sizes['after']} bytes (every URL presigned afresh by "
        f"botocore, as before: {sizes['before']} bytes; ratio "
        f"{sizes['after'] / sizes['before']:.3f}).",
        "",
    ]
    return lines


def main() -> int:
    """``python -m bench.delivery``: the delivery part alone, printed as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parser)
    args = parser.parse_args()
    results = measure_delivery(args.delivery_images, lambda line: print(line, file=sys.stderr))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
