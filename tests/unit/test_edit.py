"""``PATCH /images/{image_id}``: editing title, description, tags and metadata, versions
and ``ETag``/``If-Match``, through the Chalice test client over moto.

Every test that edits ends with :func:`tests.invariants.membership_problems` empty:
every membership item matches its image, and each image has exactly the membership
items the service's own layout names for its tags.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.metadata import membership_keys
from chalicelib.service import ImageService
from tests.invariants import Key, membership_problems
from tests.unit.conftest import TABLE, upload


def patch(
    client: Client,
    image_id: str,
    body: Any,
    user: str | None = "alice",
    if_match: str | None = None,
) -> Any:
    """PATCH ``body`` (JSON-encoded unless bytes) as ``user`` with ``If-Match``."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["X-User-Id"] = user
    if if_match is not None:
        headers["If-Match"] = if_match
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.http.request("PATCH", f"/images/{image_id}", headers=headers, body=raw)


def expected_memberships(service: ImageService) -> Any:
    """``image_id`` -> the membership keys the service's layout gives its stored record."""

    def keys(image_id: str) -> set[Key]:
        record = service.metadata.get_image(image_id)
        assert record is not None
        return {
            (key["pk"], key["sk"])
            for key in membership_keys(record, record.layout or service.metadata.layout)
        }

    return keys


def assert_memberships_sound(service: ImageService) -> None:
    problems = membership_problems(boto3.client("dynamodb"), TABLE, expected_memberships(service))
    assert problems == []


def listed(client: Client, query: str) -> list[str]:
    response = client.http.get(f"/images?{query}")
    assert response.status_code == 200, response.body
    return [item["image_id"] for item in response.json_body["items"]]


def test_an_edit_replaces_the_fields_bumps_the_version_and_moves_the_tags(
    client: Client, service: ImageService
) -> None:
    record = upload(client, title="Typo", tags=["beach", "sea"], metadata={"camera": "x"})
    other = upload(client, title="Other", tags=["beach"])
    view = client.http.get(f"/images/{record['image_id']}")
    assert view.headers["ETag"] == '"1"'
    assert record["version"] == 1

    response = patch(
        client,
        record["image_id"],
        {"title": " Fixed ", "description": "At dusk", "tags": "Sunset, BEACH"},
        if_match='"1"',
    )

    assert response.status_code == 200, response.body
    edited = response.json_body
    assert response.headers["ETag"] == '"2"'
    assert edited["version"] == 2
    assert (edited["title"], edited["description"], edited["tags"]) == (
        "Fixed",
        "At dusk",
        ["sunset", "beach"],
    )
    assert edited["metadata"] == {"camera": "x"}  # not sent: unchanged
    assert edited["created_at"] == record["created_at"]
    assert edited["updated_at"] > record["updated_at"]
    unchanged = {"title", "description", "tags", "updated_at", "version"}
    assert {k: v for k, v in edited.items() if k not in unchanged} == {
        k: v for k, v in record.items() if k not in unchanged
    }
    view = client.http.get(f"/images/{record['image_id']}?metadata_only=true")
    assert view.headers["ETag"] == '"2"'
    assert view.json_body == edited
    # Every listing shows the new fields, in the same place; the old tag no longer finds it.
    assert listed(client, "tag=sea") == []
    assert listed(client, "tag=sunset") == [record["image_id"]]
    assert listed(client, "tags=beach,sunset") == [record["image_id"]]
    assert listed(client, "tags=beach,sea") == []
    assert listed(client, "tag=beach") == [other["image_id"], record["image_id"]]
    assert listed(client, "title=fixed") == [record["image_id"]]
    for query in ("", "user_id=alice", "tag=beach", "tags=beach,sunset"):
        items = client.http.get(f"/images?{query}").json_body["items"]
        mine = next(item for item in items if item["image_id"] == record["image_id"])
        assert (mine["title"], mine["tags"], mine["version"]) == ("Fixed", ["sunset", "beach"], 2)
    assert_memberships_sound(service)


def test_metadata_is_replaced_and_null_removes_it(client: Client, service: ImageService) -> None:
    record = upload(client, metadata={"camera": "x", "lens": "y"})
    replaced = patch(client, record["image_id"], {"metadata": {"caption": "hi"}})
    assert replaced.status_code == 200, replaced.body
    assert replaced.json_body["metadata"] == {"caption": "hi"}
    removed = patch(client, record["image_id"], {"metadata": None, "title": None})
    assert removed.status_code == 200, removed.body
    assert (removed.json_body["metadata"], removed.json_body["title"]) == ({}, "")
    assert removed.headers["ETag"] == '"3"'
    assert_memberships_sound(service)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"", "body", "nothing to change"),
        ({}, "body", "nothing to change"),
        (b"[1]", "body", "JSON object"),
        (b"{nope", "body", "not valid JSON"),
        ({"user_id": "bob"}, "user_id", "not editable"),
        ({"image_id": "x"}, "image_id", "not editable"),
        ({"created_at": "2020-01-01T00:00:00.000Z"}, "created_at", "not editable"),
        ({"title": "ok", "colour": "red"}, "colour", "unknown field"),
        ({"title": "x" * 201}, "title", "limit is 200"),
        ({"title": 3}, "title", "must be a string"),
        ({"description": "x" * 2001}, "description", "limit is 2000"),
        ({"tags": ["ok", "Not OK!"]}, "tags", "must be 1-64"),
        ({"tags": [str(n) for n in range(11)]}, "tags", "at most 10"),
        ({"metadata": "text"}, "metadata", "object"),
        ({"metadata": {"camera": 1}}, "metadata.camera", "must be a string"),
        ({"metadata": {"title": "x"}}, "metadata.title", "record field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    client: Client, body: Any, field: str, words: str
) -> None:
    record = upload(client, title="Same", tags=["a"])
    response = patch(client, record["image_id"], body)
    assert response.status_code == 400, response.body
    assert response.json_body["Code"] == "BadRequestError"
    assert response.json_body["Message"].startswith(f"{field}: ")
    assert words in response.json_body["Message"]
    view = client.http.get(f"/images/{record['image_id']}?metadata_only=true")
    assert view.json_body == record


def test_identity_and_ownership_are_checked_as_for_delete(client: Client) -> None:
    record = upload(client, user_id="alice")
    missing = patch(client, record["image_id"], {"title": "x"}, user=None)
    assert (missing.status_code, missing.json_body["Code"]) == (401, "UnauthorizedError")
    assert missing.json_body["Message"].startswith("X-User-Id: missing")
    other = patch(client, record["image_id"], {"title": "x"}, user="bob")
    assert (other.status_code, other.json_body["Code"]) == (403, "ForbiddenError")
    by_query = client.http.request(
        "PATCH",
        f"/images/{record['image_id']}?user_id=alice",
        headers={"Content-Type": "application/json"},
        body=b'{"title": "by query"}',
    )
    assert by_query.status_code == 200, by_query.body
    for unknown in ("6f1c1c1e-0000-4000-8000-000000000000", "not-a-uuid"):
        response = patch(client, unknown, {"title": "x"})
        assert (response.status_code, response.json_body["Code"]) == (404, "NotFoundError")


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        ('"1"', 200),
        ("*", 200),
        ('"7", "1"', 200),
        (' "x" ,, "1" ', 200),
        ('"2"', 412),
        ('W/"1"', 412),
        ('"1', 400),
        ("1", 400),
    ],
)
def test_if_match_is_a_precondition_on_the_version(
    client: Client, if_match: str, status: int
) -> None:
    record = upload(client, title="Before")
    response = patch(client, record["image_id"], {"title": "After"}, if_match=if_match)
    assert response.status_code == status, response.body
    if status == 412:
        assert response.json_body["Code"] == "PreconditionFailedError"
        assert response.json_body["Message"] == (
            'If-Match: the image is at version "1" now; read it again and reapply the change'
        )
    if status == 400:
        assert response.json_body["Message"].startswith("If-Match: ")
    title = client.http.get(f"/images/{record['image_id']}").json_body["title"]
    assert title == ("After" if status == 200 else "Before")


def test_a_stale_etag_is_a_412_after_another_edit(client: Client) -> None:
    record = upload(client)
    assert patch(client, record["image_id"], {"title": "one"}, if_match='"1"').status_code == 200
    stale = patch(client, record["image_id"], {"title": "two"}, if_match='"1"')
    assert stale.status_code == 412
    fresh = patch(client, record["image_id"], {"title": "two"}, if_match='"2"')
    assert (fresh.status_code, fresh.headers["ETag"]) == (200, '"3"')


def test_an_item_written_before_versions_is_version_1(
    client: Client, service: ImageService
) -> None:
    record = upload(client, tags=["a"])
    dynamodb = boto3.client("dynamodb")
    for key in [{"pk": {"S": f"IMAGE#{record['image_id']}"}, "sk": {"S": "META"}}] + [
        {"pk": {"S": pk}, "sk": {"S": sk}}
        for pk, sk in expected_memberships(service)(record["image_id"])
    ]:
        dynamodb.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE version")
    view = client.http.get(f"/images/{record['image_id']}")
    assert (view.headers["ETag"], view.json_body["version"]) == ('"1"', 1)
    assert patch(client, record["image_id"], {"title": "x"}, if_match='"2"').status_code == 412
    response = patch(client, record["image_id"], {"tags": ["b"]}, if_match='"1"')
    assert (response.status_code, response.headers["ETag"]) == (200, '"2"')
    assert listed(client, "tag=b") == [record["image_id"]]
    assert_memberships_sound(service)


def test_tags_that_would_rewrite_more_than_100_items_are_a_400(
    client: Client, service: ImageService
) -> None:
    """10 tags replaced by 10 others: 55 memberships out, 55 in, plus the image item."""
    record = upload(client, tags=[f"old{n}" for n in range(10)])
    response = patch(client, record["image_id"], {"tags": [f"new{n}" for n in range(10)]})
    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith("tags: this change rewrites 111 items")
    assert client.http.get(f"/images/{record['image_id']}?metadata_only=true").json_body == record
    # Keeping five of them fits: 1 + 55 puts + 40 deletes = 96.
    kept = [f"old{n}" for n in range(5)] + [f"new{n}" for n in range(5)]
    assert patch(client, record["image_id"], {"tags": kept}).status_code == 200
    assert_memberships_sound(service)


def test_delete_after_an_edit_removes_every_item(client: Client, service: ImageService) -> None:
    record = upload(client, tags=["a", "b"])
    assert patch(client, record["image_id"], {"tags": ["c", "d", "e"]}).status_code == 200
    deleted = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "alice"})
    assert deleted.status_code == 200
    scan = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert [item for item in scan if "image_id" in item] == []
