"""GET /images: every filter, their combinations, pagination, and the Query-only design."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.service import ImageService
from tests.unit.conftest import SETTINGS, FixedClock, upload

UNSHARDED = dataclasses.replace(SETTINGS, feed_shards=1, tag_shards=1)


@pytest.fixture(params=[SETTINGS, UNSHARDED], ids=["sharded", "unsharded"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Every listing test runs on the sharded layout of the unit tests (4 feed shards,
    3 tag shards) and on the unsharded one (one partition per tag and month)."""
    setting: Settings = request.param
    return setting


@pytest.fixture
def unsharded(settings: Settings) -> None:
    """Skip a test of exact read counts on the sharded layout, whose reads depend on how
    the items fall into shards (``tests/unit/test_shards.py`` bounds them there)."""
    if settings.feed_shards > 1:
        pytest.skip("exact read counts hold for one partition; see test_shards.py")


# (user, month, day, tags, title), uploaded oldest first.
CATALOGUE = [
    ("alice", 9, 3, ["cat"], "Sleepy cat"),
    ("bob", 9, 20, ["cat", "beach"], "Beach cat"),
    ("alice", 10, 1, ["beach"], "Sunset"),
    ("alice", 10, 15, ["cat", "beach", "sea"], "CAT on the beach"),
    ("bob", 11, 2, [], "Untagged"),
    ("alice", 11, 20, ["dog"], "Dog"),
]


@pytest.fixture
def catalogue(client, clock: FixedClock) -> list[dict[str, Any]]:
    """The CATALOGUE uploaded, newest first as listings return it."""
    records = []
    for user, month, day, tags, title in CATALOGUE:
        clock.now = datetime(2026, month, day, 12, 0, tzinfo=UTC)
        records.append(upload(client, user_id=user, tags=tags, title=title))
    return records[::-1]


def _titles(client, query: str) -> list[str]:
    response = client.http.get(f"/images?{query}")
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["count"] == len(body["items"])
    return [item["title"] for item in body["items"]]


def _all_pages(client, query: str, limit: int) -> list[list[str]]:
    pages, token = [], None
    while True:
        suffix = f"&next_token={token}" if token else ""
        body = client.http.get(f"/images?{query}&limit={limit}{suffix}").json_body
        pages.append([item["title"] for item in body["items"]])
        token = body["next_token"]
        if token is None:
            return pages


def test_no_filter_lists_everything_newest_first_across_months(client, catalogue):
    assert _titles(client, "") == [r["title"] for r in catalogue]


def test_items_carry_a_presigned_url(client, catalogue):
    item = client.http.get("/images?limit=1").json_body["items"][0]

    assert item["image_id"] == catalogue[0]["image_id"]
    assert item["s3_key"] in item["url"]
    assert "X-Amz-Signature=" in item["url"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user_id=alice", ["Dog", "CAT on the beach", "Sunset", "Sleepy cat"]),
        ("user_id=bob", ["Untagged", "Beach cat"]),
        ("user_id=nobody", []),
        ("tag=cat", ["CAT on the beach", "Beach cat", "Sleepy cat"]),
        ("tag=CAT", ["CAT on the beach", "Beach cat", "Sleepy cat"]),
        ("tags=cat,beach", ["CAT on the beach", "Beach cat"]),
        ("tags=beach,cat", ["CAT on the beach", "Beach cat"]),
        ("tag=beach&tags=cat", ["CAT on the beach", "Beach cat"]),
        ("tags=cat,dog", []),
        ("tags=sea,cat,beach", ["CAT on the beach"]),
        ("tags=beach,cat,dog", []),
        ("tags=cat,beach&title=beach", ["CAT on the beach", "Beach cat"]),
        ("date_from=2026-10-01", ["Dog", "Untagged", "CAT on the beach", "Sunset"]),
        ("date_to=2026-10-01", ["Sunset", "Beach cat", "Sleepy cat"]),
        ("date_from=2026-09-20&date_to=2026-10-15", ["CAT on the beach", "Sunset", "Beach cat"]),
        ("date_from=2026-10-01T12:00:00Z&date_to=2026-10-01T12:00:00.001Z", ["Sunset"]),
        ("date_from=2026-10-01T12:00:00.002Z", ["Dog", "Untagged", "CAT on the beach"]),
        (
            "date_from=2026-10-01T14:00:00%2B02:00",
            ["Dog", "Untagged", "CAT on the beach", "Sunset"],
        ),
        ("date_range=2026-09-20,2026-10-15", ["CAT on the beach", "Sunset", "Beach cat"]),
        ("date_range=2026-11-01,", ["Dog", "Untagged"]),
        ("date_range=,2026-09-30", ["Beach cat", "Sleepy cat"]),
        ("date_from=2027-01-01", []),
        ("title=cat", ["CAT on the beach", "Beach cat", "Sleepy cat"]),
        ("title=BEACH", ["CAT on the beach", "Beach cat"]),
        ("title=zebra", []),
        ("user_id=alice&tag=cat", ["CAT on the beach", "Sleepy cat"]),
        ("user_id=alice&tags=cat,beach", ["CAT on the beach"]),
        ("user_id=bob&tag=beach&title=cat", ["Beach cat"]),
        ("user_id=alice&date_from=2026-10-01&date_to=2026-10-31", ["CAT on the beach", "Sunset"]),
        ("tag=beach&date_from=2026-10-01", ["CAT on the beach", "Sunset"]),
        ("tag=cat&title=sleepy", ["Sleepy cat"]),
        ("title=cat&date_to=2026-09-30", ["Beach cat", "Sleepy cat"]),
        ("user_id=alice&tag=cat&title=cat&date_range=2026-09-01,2026-09-30", ["Sleepy cat"]),
    ],
)
def test_filters_and_combinations(client, catalogue, query, expected):
    assert _titles(client, query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "",
        "user_id=alice",
        "tag=cat",
        "title=a",
        "date_from=2026-09-10",
        "tags=cat,beach",
        "tags=cat,beach&date_to=2026-10-20",
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_pages_are_full_and_cover_the_result_once(client, catalogue, query, limit):
    everything = _titles(client, query)

    pages = _all_pages(client, query, limit)

    assert [title for page in pages for title in page] == everything
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit or everything == []


def test_last_full_page_has_no_next_token(client, catalogue):
    body = client.http.get("/images?user_id=bob&limit=2").json_body

    assert body["count"] == 2
    assert body["next_token"] is None


def test_default_page_size_is_20(client, service: ImageService):
    for _ in range(21):
        upload(client)

    body = client.http.get("/images").json_body

    assert body["count"] == 20
    assert body["next_token"] is not None


def test_title_filter_keeps_reading_until_the_page_is_full(client, clock):
    for number in range(12):
        upload(client, title=f"match {number}" if number % 4 == 0 else f"other {number}")

    body = client.http.get("/images?title=match&limit=3").json_body

    assert [item["title"] for item in body["items"]] == ["match 8", "match 4", "match 0"]
    assert body["next_token"] is None


def test_listing_never_scans(client, catalogue, service: ImageService):
    def refuse_scan(**_: Any) -> None:
        raise AssertionError("a request path called Scan")

    events = service.metadata._dynamodb.meta.events
    events.register("before-call.dynamodb.Scan", refuse_scan)
    try:
        for query in [
            "",
            "user_id=alice",
            "tag=cat",
            "tags=cat,beach",
            "title=cat",
            "date_range=2026-09-01,2026-10-31",
            "user_id=alice&limit=1",
        ]:
            assert client.http.get(f"/images?{query}").status_code == 200
    finally:
        events.unregister("before-call.dynamodb.Scan", refuse_scan)


def _count_reads(service: ImageService) -> tuple[list[int], list[int]]:
    """Per Query call: image items read (``ScannedCount`` outside the month markers) and
    month markers read; lists that fill while the hook is registered."""
    images: list[int] = []
    markers: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        items = parsed.get("Items", [])
        if items and items[0]["pk"]["S"] == "FEEDMONTHS":
            markers.append(parsed["ScannedCount"])
        else:
            images.append(parsed["ScannedCount"])

    service.metadata._dynamodb.meta.events.register("after-call.dynamodb.Query", count)
    return images, markers


@pytest.mark.parametrize(
    "query",
    ["user_id=bob", "tag=cat", "tags=cat,dog", "date_from=2026-03-01", ""],
)
def test_a_page_reads_its_items_and_one_look_ahead(client, clock, service, unsharded, query):
    for number in range(36):
        clock.now = datetime(2026, 1 + number % 12, 1 + number // 12, tzinfo=UTC)
        upload(
            client,
            user_id="bob" if number % 3 == 0 else "alice",
            tags=["cat", "dog"] if number % 2 else ["dog"],
        )
    images, _ = _count_reads(service)

    body = client.http.get(f"/images?{query}&limit=5").json_body

    assert body["count"] == 5
    assert sum(images) == 6, images


@pytest.mark.parametrize("query", ["", "tags=cat,dog", "user_id=bob&date_from=2026-02-01"])
def test_a_full_page_through_reads_each_item_once_plus_one_look_ahead_per_page(
    client, clock, service, unsharded, query
):
    for number in range(30):
        clock.now = datetime(2026, 1 + number % 10, 1 + number // 10, tzinfo=UTC)
        upload(client, user_id="bob", tags=["cat", "dog"])
    images, markers = _count_reads(service)

    pages = _all_pages(client, query, limit=4)

    returned = sum(len(page) for page in pages)
    assert sum(images) == returned + len(pages) - 1
    # The feed reads a month's marker only when it enters that month.
    assert sum(markers) <= (10 + len(pages) if query == "" else 10)


def test_a_tag_filter_beyond_the_pair_sizes_queries_by_selectivity(
    client, clock, service, unsharded
):
    for number in range(60):
        upload(client, tags=["cat", "dog", "rare"] if number % 10 == 0 else ["cat", "dog"])
    images, _ = _count_reads(service)

    body = client.http.get("/images?tags=cat,dog,rare&limit=5").json_body

    assert body["count"] == 5
    # 60 pair members hold the 6 matches: at most the pair partition is read, in Queries
    # sized by the selectivity seen (about halving what is still wanted each time).
    assert sum(images) <= 60 and len(images) <= 8, images
