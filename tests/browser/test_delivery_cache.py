"""The gallery reloaded within a cache window downloads no image again: the API hands
out the same URLs, the page keeps them as given, and the objects carry an immutable
``Cache-Control`` that moto's server sends back (``make run``'s stack, real Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from bench.delivery import seed_images, visit_reload_scroll
from tests.integration.support import Stack

pytestmark = [pytest.mark.browser, pytest.mark.integration]

IMAGES = 8


def test_a_reload_transfers_no_image_bytes(
    browser: Browser, browser_stack: Stack, user: str
) -> None:
    seed_images(browser_stack.base_url, user, IMAGES)
    phases = visit_reload_scroll(
        browser,
        f"{browser_stack.base_url}/?user_id={user}&limit=100",
        browser_stack.endpoint_url,
        IMAGES,
    )
    first, reload, scroll = phases["first_visit"], phases["reload"], phases["scroll_back"]
    # The first visit fetched every tile's image over the network ...
    assert first["requests"] >= IMAGES and first["from_cache"] == 0
    assert first["network_bytes"] > 0
    # ... the reload and scrolling back got every one from the browser's cache.
    assert reload["network_bytes"] == 0, phases
    assert reload["from_cache"] == reload["requests"], phases
    assert scroll["network_bytes"] == 0, phases
