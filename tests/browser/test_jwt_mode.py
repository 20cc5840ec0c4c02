"""The gallery against an ``AUTH_MODE=jwt`` API: a bearer-token field instead of
"acting as", the listing only once a token is given, upload and owner delete with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from chalicelib.auth import issue_token
from scripts.emulator import free_port, start_moto_server, wait_for_port
from scripts.token import jwt_settings
from tests.browser.conftest import BrowserPage, new_page
from tests.browser.test_gallery import image_file, tiles, wait_images_decoded
from tests.integration.support import require_tools, start_run_local, stop_run_local

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def jwt_base_url(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``run_local`` with ``AUTH_MODE=jwt`` on its own moto server."""
    require_tools()
    moto = start_moto_server()
    port = free_port()
    log_path = tmp_path_factory.mktemp("jwt_run_local") / "run_local.log"
    process = start_run_local(
        port, log_path, "--no-autoreload", AWS_ENDPOINT_URL=moto.endpoint_url, AUTH_MODE="jwt"
    )
    try:
        try:
            wait_for_port(port, process, timeout=60)
        except RuntimeError as error:
            pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_run_local(process)
        moto.stop()


@pytest.fixture
def jwt_page(browser: Browser, jwt_base_url: str) -> Iterator[BrowserPage]:
    yield from new_page(browser, jwt_base_url, viewport={"width": 1200, "height": 800})


def test_token_mode_uploads_and_deletes_as_the_token_subject(
    jwt_page: BrowserPage, tmp_path: Path
) -> None:
    page = jwt_page.page
    page.goto(f"{jwt_page.base_url}/")
    expect(page.locator("body")).to_have_attribute("data-auth-mode", "jwt")
    expect(page.locator("#token")).to_be_visible()
    expect(page.locator("#acting-as")).to_be_hidden()
    expect(page.locator("#gallery-status")).to_contain_text("bearer token")

    page.fill("#token", issue_token("alice", jwt_settings()))
    page.dispatch_event("#token", "change")
    expect(page.locator("#gallery-status")).to_have_text("No images match.")

    photo = image_file(tmp_path / "jwt.jpg", "JPEG", (300, 200), (120, 60, 160))
    page.set_input_files("#file-input", str(photo))
    row = page.locator('#upload-list .upload-item[data-filename="jwt.jpg"]')
    expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    expect(tiles(jwt_page)).to_have_count(1)  # put first as soon as it is processed
    wait_images_decoded(jwt_page, 1)
    expect(page.locator("#gallery-status")).to_have_text("1 image")

    tiles(jwt_page).first.click()
    expect(page.locator("#detail-facts")).to_contain_text("alice")
    expect(page.locator("#detail-delete")).to_be_visible()
    page.click("#detail-delete")
    expect(tiles(jwt_page)).to_have_count(0)
    expect(page.locator("#gallery-status")).to_have_text("No images match.")
    jwt_page.assert_clean()
