"""CORS in a real browser: a page on another origin calls the API (preflighted, with
``X-User-Id``) and posts a direct upload to the bucket, as ``CORS_ALLOW_ORIGINS`` allows;
a page on an origin not in the list is refused by the browser.

The other origins are two small HTTP servers on loopback (other ports are other
origins): Chromium's Private Network Access rules forbid a page from a public address
to call a loopback API at all, so the pages must come from loopback too."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser

from scripts.emulator import free_port, start_moto_server, wait_for_port
from tests.browser.conftest import BrowserPage, new_page
from tests.integration.support import require_tools, start_run_local, stop_run_local

pytestmark = [pytest.mark.browser, pytest.mark.integration]


#: ``(allowed, refused)`` origins.
Origins = tuple[str, str]


class BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>app</title><p>another origin</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """``(allowed, refused)``: two loopback origins serving a blank page."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), BlankPage) for _ in range(2)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    allowed, refused = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    yield allowed, refused
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cors_api(
    chromium_path: str, origins: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``run_local`` allowing the first of :func:`origins`; yields the API's base URL."""
    require_tools()
    moto = start_moto_server()
    port = free_port()
    log_path = tmp_path_factory.mktemp("cors_run_local") / "run_local.log"
    process = start_run_local(
        port, log_path, "--no-autoreload", AWS_ENDPOINT_URL=moto.endpoint_url,
        CORS_ALLOW_ORIGINS=origins[0],
    )  # fmt: skip
    try:
        try:
            wait_for_port(port, process, timeout=60)
        except RuntimeError as error:
            pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_run_local(process)
        moto.stop()


def page_on(browser: Browser, origin: str, api: str) -> Iterator[BrowserPage]:
    """A blank page at ``origin``; ``base_url`` is the API's."""
    for wrapped in new_page(browser, api):
        wrapped.page.goto(f"{origin}/")
        yield wrapped


@pytest.fixture
def allowed_page(
    browser: Browser, cors_api: str, origins: tuple[str, str]
) -> Iterator[BrowserPage]:
    yield from page_on(browser, origins[0], cors_api)


@pytest.fixture
def refused_page(
    browser: Browser, cors_api: str, origins: tuple[str, str]
) -> Iterator[BrowserPage]:
    yield from page_on(browser, origins[1], cors_api)


DIRECT_UPLOAD = """async ([api, bytes]) => {
    const headers = {'Content-Type': 'application/json', 'X-User-Id': 'carol'};
    const start = await fetch(`${api}/uploads`, {
        method: 'POST', headers,
        body: JSON.stringify({filename: 'cors.png', size_bytes: bytes.length, tags: ['cors']}),
    });
    const started = await start.json();
    const form = new FormData();
    for (const [name, value] of Object.entries(started.upload.fields)) form.append(name, value);
    form.append(started.upload.file_field, new Blob([new Uint8Array(bytes)]), 'cors.png');
    const progress = await new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        let last = 0;
        xhr.open('POST', started.upload.url);
        xhr.upload.onprogress = (event) => { last = event.loaded / event.total; };
        xhr.onload = () => resolve({status: xhr.status, last});
        xhr.onerror = () => reject(new Error('bucket refused'));
        xhr.send(form);
    });
    const done = await fetch(`${api}/uploads/${started.upload_id}/complete`, {
        method: 'POST', headers,
    });
    return {
        start: start.status, location: start.headers.get('Location'), progress,
        complete: done.status, record: await done.json(),
    };
}"""


def png() -> list[int]:
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (10, 200, 90)).save(buffer, "PNG")
    return list(buffer.getvalue())


def test_an_allowed_origin_lists_and_uploads_directly(allowed_page: BrowserPage) -> None:
    api = allowed_page.base_url
    result: dict[str, Any] = allowed_page.page.evaluate(DIRECT_UPLOAD, [api, png()])
    assert result["start"] == 201
    assert result["location"].startswith("/uploads/")  # exposed to the script
    assert result["progress"]["status"] in (200, 201, 204)
    assert result["progress"]["last"] == 1
    assert result["complete"] == 201
    assert (result["record"]["user_id"], result["record"]["tags"]) == ("carol", ["cors"])
    listed = allowed_page.page.evaluate(
        "async (api) => (await (await fetch(`${api}/images?tag=cors`)).json()).count", api
    )
    assert listed == 1
    allowed_page.assert_clean()


def test_another_origin_is_refused_by_the_browser(refused_page: BrowserPage) -> None:
    outcome = refused_page.page.evaluate(
        """async (api) => {
            try {
                await fetch(`${api}/images`, {headers: {'X-User-Id': 'carol'}});
                return 'read';
            } catch (error) {
                return error.name;
            }
        }""",
        refused_page.base_url,
    )
    assert outcome == "TypeError"  # the preflight named no allowed origin
    assert any("CORS" in text for text in refused_page.console_errors)
    refused_page.assert_clean(expected_console=("CORS", "net::ERR_FAILED"))
