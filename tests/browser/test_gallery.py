"""The web gallery in a real browser (Chromium via Playwright) against ``make run``'s
own script: upload, placeholders, filters, infinite scroll, detail, download, delete,
XSS, keyboard, phone width. Every wait is on a condition (Playwright's ``expect`` and
``wait_for_function``), never a fixed sleep."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, artifact_path
from tests.integration.support import FIXTURES, Stack

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XSS_TITLE = "<img src=x onerror=alert(1)>"


def image_file(path: Path, fmt: str, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    """A real photo-like image: a sky fading from ``color``, a sun, two hills."""
    from PIL import ImageDraw

    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        fade = y / height
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(round(c + (255 - c) * fade * 0.7) for c in color),
        )
    radius = min(size) // 8
    sun = (width * 2 // 3, height // 3)
    draw.ellipse(
        [sun[0] - radius, sun[1] - radius, sun[0] + radius, sun[1] + radius], fill=(250, 220, 120)
    )
    draw.polygon(
        [(0, height), (width * 2 // 5, height // 2), (width * 4 // 5, height)], fill=(40, 70, 50)
    )
    draw.polygon(
        [(width // 3, height), (width * 3 // 4, height * 3 // 5), (width, height)],
        fill=(70, 100, 60),
    )
    image.save(path, fmt)
    return path


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 40, 90)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def seed(
    stack: Stack,
    user: str,
    title: str = "",
    tags: str = "",
    description: str = "",
    data: bytes | None = None,
) -> dict[str, Any]:
    """Upload one image through ``POST /images`` (the API, not the page)."""
    response = requests.post(
        stack.url("/images"),
        headers={"X-User-Id": user},
        data={"user_id": user, "title": title, "tags": tags, "description": description},
        files={"file": ("seed.png", data or image_bytes(), "image/png")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


def open_gallery(bp: BrowserPage, query: str = "", acting_as: str | None = None) -> None:
    """Load the page (``query`` like ``?user_id=u``) and wait until its script runs."""
    bp.page.goto(f"{bp.base_url}/{query}")
    expect(bp.page.locator("body")).to_have_attribute("data-ready", "true")
    if acting_as is not None:
        bp.page.fill("#acting-as", acting_as)
        bp.page.dispatch_event("#acting-as", "change")


def tiles(bp: BrowserPage) -> Any:
    return bp.page.locator("#gallery .tile")


def wait_images_decoded(bp: BrowserPage, count: int) -> None:
    """Wait until ``count`` tiles show a decoded image (``naturalWidth > 0``)."""
    bp.page.wait_for_function(
        """(count) => {
            const images = [...document.querySelectorAll('#gallery .tile img')];
            const decoded = (img) => img.complete && img.naturalWidth > 0;
            return images.length === count && images.every(decoded);
        }""",
        arg=count,
    )


def test_upload_three_images_with_the_file_input(
    desktop: BrowserPage, user: str, tmp_path: Path
) -> None:
    files = [
        image_file(tmp_path / "red.png", "PNG", (640, 480), (200, 30, 40)),
        image_file(tmp_path / "green.jpg", "JPEG", (800, 600), (30, 160, 60)),
        image_file(tmp_path / "blue.webp", "WEBP", (480, 640), (40, 60, 200)),
    ]
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    desktop.page.fill("#upload-tags", "browser, holiday")
    desktop.page.set_input_files("#file-input", [str(path) for path in files])

    rows = desktop.page.locator("#upload-list .upload-item")
    expect(rows).to_have_count(3)
    for path in files:
        row = desktop.page.locator(f'#upload-list .upload-item[data-filename="{path.name}"]')
        expect(row).to_have_attribute("data-state", "done", timeout=60_000)
        expect(row.locator("progress")).to_have_js_property("value", 100)
    expect(tiles(desktop)).to_have_count(3)
    wait_images_decoded(desktop, 3)
    # Renditions: a srcset with width descriptors, not the original.
    srcsets = (
        tiles(desktop).locator("img").evaluate_all("(images) => images.map((img) => img.srcset)")
    )
    assert all(re.search(r" \d+w", srcset) for srcset in srcsets), srcsets
    # The screenshot shows the images, not their fade-in over the placeholders.
    desktop.page.emulate_media(reduced_motion="reduce")
    expect(tiles(desktop).locator("img.loaded")).to_have_count(3)
    desktop.page.screenshot(path=str(artifact_path("gallery.png")), full_page=True)
    desktop.assert_clean()


def test_a_text_file_shows_the_415_message(desktop: BrowserPage, user: str) -> None:
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    desktop.page.set_input_files("#file-input", str(FIXTURES / "not-an-image.txt"))
    row = desktop.page.locator('#upload-list .upload-item[data-filename="not-an-image.txt"]')
    expect(row).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(row.locator(".state")).to_contain_text("415")
    message = row.locator(".state").inner_text()
    assert len(message) > len("415: "), message  # the API's Message, not just a status
    desktop.assert_clean(expected_console=("status of 415",))


def test_filter_by_tag(desktop: BrowserPage, browser_stack: Stack, user: str) -> None:
    red = [seed(browser_stack, user, title=f"red {i}", tags="red") for i in range(2)]
    seed(browser_stack, user, title="blue", tags="blue")
    open_gallery(desktop, f"?user_id={user}")
    expect(tiles(desktop)).to_have_count(3)
    desktop.page.fill('#filters input[name="tags"]', "red")
    desktop.page.click('#filters button[type="submit"]')
    expect(tiles(desktop)).to_have_count(2)
    shown = tiles(desktop).evaluate_all("(tiles) => tiles.map((tile) => tile.dataset.imageId)")
    assert shown == [record["image_id"] for record in reversed(red)]  # newest first
    assert "tag=red" in desktop.page.url
    desktop.assert_clean()


def test_scrolling_loads_the_next_page_at_phone_width(
    phone: BrowserPage, browser_stack: Stack, user: str
) -> None:
    seeded = [seed(browser_stack, user, title=f"n{i}") for i in range(7)]
    listings: list[str] = []
    phone.page.on(
        "request", lambda request: "/images?" in request.url and listings.append(request.url)
    )
    open_gallery(phone, f"?user_id={user}&limit=3")
    expect(tiles(phone)).to_have_count(3)
    expect(phone.page.locator("#gallery-status")).to_contain_text("scroll for more")
    # Nothing more loads until the end of the grid comes near the viewport.
    assert (
        phone.page.evaluate("document.getElementById('sentinel').getBoundingClientRect().top") > 900
    )
    assert len(listings) == 1 and "next_token" not in listings[0]
    phone.page.locator("#sentinel").scroll_into_view_if_needed()
    phone.page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length >= 6")
    phone.page.locator("#sentinel").scroll_into_view_if_needed()
    expect(tiles(phone)).to_have_count(7)
    expect(phone.page.locator("#gallery-status")).to_have_text("7 images")
    shown = tiles(phone).evaluate_all("(tiles) => tiles.map((tile) => tile.dataset.imageId)")
    assert shown == [record["image_id"] for record in reversed(seeded)]
    assert len(listings) == 3 and all("next_token=" in url for url in listings[1:])
    assert all("limit=3" in url for url in listings)
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    phone.page.screenshot(path=str(artifact_path("gallery-phone.png")))
    phone.assert_clean()


def test_detail_view_with_the_keyboard_download_and_delete(
    desktop: BrowserPage, browser_stack: Stack, user: str, tmp_path: Path
) -> None:
    data = image_bytes("PNG", (120, 80))
    record = seed(
        browser_stack,
        user,
        title="Harbour",
        tags="sea,boats",
        description="Morning boats",
        data=data,
    )
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    tile = tiles(desktop).first
    expect(tile).to_have_count(1)
    tile.focus()
    desktop.page.keyboard.press("Enter")
    dialog = desktop.page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(desktop.page.locator("#detail-title")).to_have_text("Harbour")
    expect(desktop.page.locator("#detail-description")).to_have_text("Morning boats")
    expect(desktop.page.locator("#detail-tags li")).to_have_text(["sea", "boats"])
    facts = desktop.page.locator("#detail-facts")
    expect(facts).to_contain_text("120 \u00d7 80 px")
    expect(facts).to_contain_text(f"{len(data)} B")
    expect(desktop.page.locator("#detail-img")).to_have_attribute("alt", "Harbour")
    desktop.page.emulate_media(reduced_motion="reduce")
    expect(desktop.page.locator("#detail-img.loaded")).to_have_count(1)
    desktop.page.screenshot(path=str(artifact_path("detail.png")))

    desktop.page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(tile).to_be_focused()  # focus returns to the tile
    desktop.page.keyboard.press("Enter")
    expect(dialog).to_be_visible()

    with desktop.page.expect_download() as download_info:
        desktop.page.click("#detail-download")
    download = download_info.value
    assert download.suggested_filename == record["filename"]
    saved = tmp_path / "downloaded"
    download.save_as(saved)
    assert saved.read_bytes() == data

    expect(desktop.page.locator("#detail-delete")).to_be_visible()  # the owner may delete
    desktop.page.click("#detail-delete")
    expect(dialog).to_be_hidden()
    expect(tiles(desktop)).to_have_count(0)
    gone = requests.get(browser_stack.url(f"/images/{record['image_id']}"), timeout=30)
    assert gone.status_code == 404
    desktop.assert_clean()


def test_delete_is_offered_only_to_the_owner(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    seed(browser_stack, user, title="not yours")
    open_gallery(desktop, f"?user_id={user}", acting_as="someone-else")
    tiles(desktop).first.click()
    expect(desktop.page.locator("#detail-title")).to_have_text("not yours")
    expect(desktop.page.locator("#detail-delete")).to_be_hidden()
    desktop.assert_clean()


def test_an_xss_title_shows_as_text_and_runs_nothing(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    seed(browser_stack, user, title=XSS_TITLE, tags="xss", description="<script>alert(2)</script>")
    open_gallery(desktop, f"?user_id={user}")
    expect(tiles(desktop)).to_have_count(1)
    caption = tiles(desktop).first.locator(".caption")
    expect(caption).to_have_text(XSS_TITLE)
    expect(tiles(desktop).first.locator("img")).to_have_attribute("alt", XSS_TITLE)
    tiles(desktop).first.click()
    expect(desktop.page.locator("#detail-title")).to_have_text(XSS_TITLE)
    expect(desktop.page.locator("#detail-description")).to_have_text("<script>alert(2)</script>")
    assert desktop.page.locator('img[src="x"]').count() == 0
    assert desktop.page.locator("#detail script, #gallery script").count() == 0
    desktop.assert_clean()  # no dialog opened


def test_placeholder_is_painted_from_the_blurhash(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    record = seed(
        browser_stack, user, title="solid", data=image_bytes("PNG", (64, 64), (200, 40, 90))
    )
    if not record.get("placeholder"):
        pytest.skip("the API returns no placeholder yet (SPEC: Processing)")
    open_gallery(desktop, f"?user_id={user}")
    canvas = tiles(desktop).first.locator("canvas")
    expect(canvas).to_be_attached()
    assert canvas.evaluate("(canvas) => canvas.hidden") is False
    pixel = canvas.evaluate(
        "(canvas) => [...canvas.getContext('2d').getImageData(16, 16, 1, 1).data]"
    )
    assert all(abs(got - want) <= 12 for got, want in zip(pixel[:3], (200, 40, 90), strict=True)), (
        pixel
    )
    background = tiles(desktop).first.evaluate("(tile) => getComputedStyle(tile).backgroundColor")
    assert background.startswith("rgb("), background
    desktop.assert_clean()


def test_the_page_serves_its_csp_and_loads_nothing_from_elsewhere(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    seed(browser_stack, user, title="csp")
    origins: set[str] = set()
    desktop.page.on(
        "request", lambda request: origins.add(re.sub(r"^(https?://[^/]+).*", r"\1", request.url))
    )
    open_gallery(desktop, f"?user_id={user}")
    wait_images_decoded(desktop, 1)
    assert origins <= {browser_stack.base_url, browser_stack.endpoint_url}, origins
    desktop.assert_clean()


def test_drag_and_drop_uploads(desktop: BrowserPage, user: str) -> None:
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    png = image_bytes("PNG", (200, 150), (20, 120, 200))
    desktop.page.evaluate(
        """(bytes) => {
            const transfer = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'});
            transfer.items.add(file);
            const zone = document.getElementById('drop-zone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        list(png),
    )
    row = desktop.page.locator('#upload-list .upload-item[data-filename="dropped.png"]')
    expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    expect(row.locator("progress")).to_have_js_property("value", 100)
    expect(tiles(desktop)).to_have_count(1)
    wait_images_decoded(desktop, 1)
    desktop.assert_clean()


def test_without_acting_as_files_wait_for_the_identity(
    desktop: BrowserPage, user: str, tmp_path: Path
) -> None:
    # Issue 18: with an empty "Acting as" (AUTH_MODE=none) each file failed with
    # "400: user_id: missing". Now the page asks first, then uploads them.
    files = [
        image_file(tmp_path / "first.png", "PNG", (320, 240), (200, 30, 40)),
        image_file(tmp_path / "second.jpg", "JPEG", (320, 240), (30, 160, 60)),
    ]
    open_gallery(desktop, f"?user_id={user}")
    expect(desktop.page.locator("#acting-as")).to_have_value("")
    requests_sent: list[str] = []
    desktop.page.on(
        "request", lambda request: "/uploads" in request.url and requests_sent.append(request.url)
    )
    desktop.page.set_input_files("#file-input", [str(path) for path in files])

    note = desktop.page.locator("#identity-needed")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Type whom you are acting as first")
    expect(note).to_contain_text("2 file(s) will upload once you do")
    expect(desktop.page.locator("#acting-as")).to_be_focused()
    expect(desktop.page.locator("#acting-as")).to_have_attribute("aria-invalid", "true")
    expect(desktop.page.locator("#upload-list .upload-item")).to_have_count(0)
    assert requests_sent == []  # nothing was sent, so nothing failed

    desktop.page.fill("#acting-as", user)
    desktop.page.press("#acting-as", "Enter")

    expect(note).to_be_hidden()
    for path in files:
        row = desktop.page.locator(f'#upload-list .upload-item[data-filename="{path.name}"]')
        expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    expect(tiles(desktop)).to_have_count(2)
    assert not desktop.page.locator("#upload-list .failed").count()
    desktop.assert_clean()
