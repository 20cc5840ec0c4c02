"""The gallery's edit form (detail view, owner only): title, description and tags are
sent as ``PATCH /images/{id}`` with ``If-Match`` from the version the view read; the
tile and the detail show the new record; a 4xx shows the API's Message."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, artifact_path
from tests.browser.test_gallery import open_gallery, seed, tiles
from tests.integration.support import Stack


def listed(stack: Stack, query: str) -> list[str]:
    response = requests.get(stack.url(f"/images?{query}"), timeout=30)
    assert response.status_code == 200, response.text
    return [item["image_id"] for item in response.json()["items"]]


def test_the_owner_edits_title_description_and_tags(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    record = seed(browser_stack, user, title="Typo", tags="old,sea", description="first")
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    tiles(desktop).first.click()
    page = desktop.page
    expect(page.locator("#detail-title")).to_have_text("Typo")
    page.click("#detail-edit-open")
    expect(page.locator("#edit-title")).to_have_value("Typo")
    expect(page.locator("#edit-tags")).to_have_value("old, sea")
    page.fill("#edit-title", "Fixed")
    page.fill("#edit-description", "At dusk")
    page.fill("#edit-tags", "New, sea")
    page.click("#edit-save")

    expect(page.locator("#detail-title")).to_have_text("Fixed")
    expect(page.locator("#detail-description")).to_have_text("At dusk")
    expect(page.locator("#detail-tags li")).to_have_text(["new", "sea"])
    expect(page.locator("#detail-edit")).to_be_hidden()
    expect(page.locator("#detail-error")).to_have_text("")
    page.screenshot(path=str(artifact_path("edit.png")))
    page.keyboard.press("Escape")
    expect(tiles(desktop).first.locator(".caption")).to_have_text("Fixed")
    expect(tiles(desktop).first.locator("img")).to_have_attribute("alt", "Fixed")
    stored = requests.get(browser_stack.url(f"/images/{record['image_id']}"), timeout=30)
    assert stored.headers["ETag"] == '"2"'
    assert (stored.json()["title"], stored.json()["tags"]) == ("Fixed", ["new", "sea"])
    assert listed(browser_stack, f"user_id={user}&tag=old") == []
    assert listed(browser_stack, f"user_id={user}&tag=new") == [record["image_id"]]
    # The tile opens the edited record (not the one it was drawn from).
    tiles(desktop).first.click()
    expect(page.locator("#detail-title")).to_have_text("Fixed")
    desktop.assert_clean()


def test_an_edit_after_someone_elses_shows_the_412_and_a_bad_tag_the_400(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    record = seed(browser_stack, user, title="Shared", tags="a")
    open_gallery(desktop, f"?user_id={user}", acting_as=user)
    tiles(desktop).first.click()
    page = desktop.page
    page.click("#detail-edit-open")
    page.fill("#edit-tags", "a, Not OK!")
    page.click("#edit-save")
    expect(page.locator("#detail-error")).to_contain_text("400: tags: tag 'not ok!' must be")
    expect(page.locator("#detail-edit")).to_be_visible()

    elsewhere = requests.patch(
        browser_stack.url(f"/images/{record['image_id']}"),
        headers={"X-User-Id": user},
        json={"title": "Changed elsewhere"},
        timeout=30,
    )
    assert elsewhere.status_code == 200, elsewhere.text
    page.fill("#edit-tags", "b")
    page.click("#edit-save")
    expect(page.locator("#detail-error")).to_have_text(
        '412: If-Match: the image is at version "2" now; read it again and reapply the change'
    )
    stored = requests.get(browser_stack.url(f"/images/{record['image_id']}"), timeout=30).json()
    assert (stored["title"], stored["tags"]) == ("Changed elsewhere", ["a"])
    desktop.assert_clean(expected_console=("400", "412"))


def test_edit_is_offered_only_to_the_owner(
    desktop: BrowserPage, browser_stack: Stack, user: str
) -> None:
    seed(browser_stack, user, title="not yours")
    open_gallery(desktop, f"?user_id={user}", acting_as="someone-else")
    tiles(desktop).first.click()
    expect(desktop.page.locator("#detail-title")).to_have_text("not yours")
    expect(desktop.page.locator("#detail-edit-open")).to_be_hidden()
    expect(desktop.page.locator("#detail-edit")).to_be_hidden()
    desktop.assert_clean()
