"""Browser fixtures: the page served by ``make run``'s own script, in Debian's Chromium.

One moto server and one ``python -m scripts.run_local`` (given the moto server through
``AWS_ENDPOINT_URL``, as ``tests/integration`` does) serve the API and the page on a
free port for the session. Playwright drives the system Chromium
(``apt-get install chromium``; ``.ci/run`` installs it when missing): Playwright's own
browser download is not reachable here, and Chromium must not try the network, hence
the flags and a fresh, empty profile per session. The tests skip, saying why, only
when no Chromium executable can be found.

Every page records console errors, uncaught exceptions and JavaScript dialogs; a test
ends by asserting there were none (:meth:`BrowserPage.assert_clean`). Screenshots go to
``artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from scripts.emulator import MotoServer, free_port, start_moto_server, wait_for_port
from scripts.run_local import PROJECT_DIR, stage_environment
from tests.integration.support import (
    Stack,
    aws_client,
    require_tools,
    start_run_local,
    stop_run_local,
)

ARTIFACTS = PROJECT_DIR / "artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM_PATH``, Debian's ``/usr/bin/chromium``, or
    one on ``PATH``."""
    for candidate in (os.environ.get("CHROMIUM_PATH", ""), *CHROMIUM_CANDIDATES):
        if not candidate:
            continue
        found = (
            candidate
            if os.path.isabs(candidate) and os.access(candidate, os.X_OK)
            else shutil.which(candidate)
        )
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Skip the browser tests (printing why) when no Chromium can be found."""
    path = find_chromium()
    if path is None:
        reason = "Chromium not found (apt-get install chromium, or set CHROMIUM_PATH)"
        print(f"\ntests/browser: skipped: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def browser_stack(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """moto's server + ``run_local`` on free ports (the page at ``Stack.base_url``)."""
    require_tools()
    moto: MotoServer = start_moto_server()
    port = free_port()
    log_path = tmp_path_factory.mktemp("browser_run_local") / "run_local.log"
    process = start_run_local(port, log_path, "--no-autoreload", AWS_ENDPOINT_URL=moto.endpoint_url)
    try:
        try:
            wait_for_port(port, process, timeout=60)
        except RuntimeError as error:
            pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
        config = stage_environment("dev")
        yield Stack(
            base_url=f"http://127.0.0.1:{port}",
            endpoint_url=moto.endpoint_url,
            bucket=config["BUCKET_NAME"],
            table=config["TABLE_NAME"],
            s3=aws_client("s3", moto.endpoint_url),
            log_path=log_path,
        )
    finally:
        stop_run_local(process)
        moto.stop()


@pytest.fixture(scope="session")
def browser(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium, headless, on a new empty profile."""
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path,
            args=[*CHROMIUM_ARGS, f"--disk-cache-dir={tmp_path_factory.mktemp('chromium-cache')}"],
        )
        yield instance
        instance.close()


@dataclass
class BrowserPage:
    """A page plus what it reported: console errors, uncaught errors, dialogs."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def assert_clean(self, expected_console: tuple[str, ...] = ()) -> None:
        """No uncaught error, no dialog, and no console error except ones containing an
        ``expected_console`` text (a refused request the test provoked)."""
        unexpected = [
            text
            for text in self.console_errors
            if not any(part in text for part in expected_console)
        ]
        assert self.page_errors == []
        assert self.dialogs == []
        assert unexpected == []


@pytest.fixture
def user() -> str:
    """A user of this test alone, so tests sharing the stack do not see each other's images."""
    return f"u{uuid.uuid4().hex[:12]}"


def new_page(browser: Browser, base_url: str, **context_options: object) -> Iterator[BrowserPage]:
    """A fresh context and page that record what they report."""
    context = browser.new_context(accept_downloads=True, **context_options)
    page = context.new_page()
    wrapped = BrowserPage(page=page, base_url=base_url)
    page.on(
        "console",
        lambda message: message.type == "error" and wrapped.console_errors.append(message.text),
    )
    page.on("pageerror", lambda error: wrapped.page_errors.append(str(error)))

    def on_dialog(dialog: Dialog) -> None:
        wrapped.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield wrapped
    finally:
        context.close()


@pytest.fixture
def desktop(browser: Browser, browser_stack: Stack) -> Iterator[BrowserPage]:
    """A desktop-sized page (1200 x 800)."""
    yield from new_page(browser, browser_stack.base_url, viewport={"width": 1200, "height": 800})


@pytest.fixture
def phone(browser: Browser, browser_stack: Stack) -> Iterator[BrowserPage]:
    """A phone-sized page (390 x 700, touch)."""
    yield from new_page(
        browser,
        browser_stack.base_url,
        viewport={"width": 390, "height": 700},
        has_touch=True,
        is_mobile=True,
    )


def artifact_path(name: str) -> Path:
    """Where a test saves a screenshot (``artifacts/``, created on demand)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
