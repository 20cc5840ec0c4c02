"""Request shapes the common clients of this API send (SPEC, "Compatible request shapes").

- multipart whose ``metadata`` part holds record fields: ``user_id``, ``title``,
  ``description`` and ``tags`` are taken from it (a form field of the same name wins),
  the rest stays in ``metadata``; the JSON form's ``metadata`` behaves the same way;
- multipart with the file part named ``file``, ``image`` or ``image_data``;
- ``tags`` as a JSON array in text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from chalice.test import Client

from tests.unit.conftest import image_bytes, post_form, post_json

BEACH = {"user_id": "123", "caption": "Beach vibes", "tags": ["travel", "beach"]}


def png_part(name: str = "file") -> tuple[str, Any]:
    return (name, ("beach.png", image_bytes(), "image/png"))


def test_multipart_metadata_holding_record_fields(client: Client) -> None:
    response = post_form(client, [png_part(), ("metadata", json.dumps(BEACH))])

    assert response.status_code == 201, response.body
    record = response.json_body
    assert record["user_id"] == "123"
    assert record["tags"] == ["travel", "beach"]
    assert record["metadata"] == {"caption": "Beach vibes"}
    stored = client.http.get(f"/images/{record['image_id']}").json_body
    assert (stored["user_id"], stored["tags"], stored["metadata"]) == (
        "123",
        ["travel", "beach"],
        {"caption": "Beach vibes"},
    )
    assert client.http.get("/images?tag=beach").json_body["count"] == 1


def test_a_form_field_wins_over_the_same_field_in_metadata(client: Client) -> None:
    metadata = {**BEACH, "title": "From metadata", "description": "Also from metadata"}
    response = post_form(
        client,
        [png_part(), ("user_id", "alice"), ("tags", "cat"), ("metadata", json.dumps(metadata))],
    )

    assert response.status_code == 201, response.body
    record = response.json_body
    assert (record["user_id"], record["tags"]) == ("alice", ["cat"])
    assert (record["title"], record["description"]) == ("From metadata", "Also from metadata")
    assert record["metadata"] == {"caption": "Beach vibes"}  # record fields never stay


def test_metadata_record_fields_are_validated_under_their_metadata_name(client: Client) -> None:
    response = post_form(
        client, [png_part(), ("metadata", json.dumps({"user_id": "bob", "tags": ["a b"]}))]
    )

    assert response.status_code == 400
    assert response.json_body["Message"].startswith("metadata.tags: tag 'a b'")


@pytest.mark.parametrize("name", ["file", "image", "image_data"])
def test_the_file_part_may_be_named_file_image_or_image_data(client: Client, name: str) -> None:
    response = post_form(client, [png_part(name), ("user_id", "alice")])

    assert response.status_code == 201, response.body
    assert response.json_body["content_type"] == "image/png"


def test_two_image_parts_are_refused(client: Client) -> None:
    response = post_form(client, [png_part("file"), png_part("image_data"), ("user_id", "alice")])

    assert response.status_code == 400
    assert response.json_body["Message"] == "file: send exactly one image per request"


@pytest.mark.parametrize(
    "tags",
    ['["nature","vacation"]', ' ["Nature", "vacation", "nature"] ', '["nature,vacation"]'],
    ids=["compact", "spaced-mixed-case-duplicate", "comma-inside"],
)
def test_multipart_tags_as_a_json_array_in_text(client: Client, tags: str) -> None:
    response = post_form(client, [png_part(), ("user_id", "alice"), ("tags", tags)])

    assert response.status_code == 201, response.body
    assert response.json_body["tags"] == ["nature", "vacation"]


def test_json_tags_as_a_json_array_in_text(client: Client) -> None:
    body = {
        "image_base64": base64.b64encode(image_bytes()).decode(),
        "user_id": "alice",
        "tags": '["nature","vacation"]',
    }
    response = post_json(client, body)

    assert response.status_code == 201, response.body
    assert response.json_body["tags"] == ["nature", "vacation"]


def test_json_metadata_holding_record_fields_behaves_as_in_multipart(client: Client) -> None:
    body = {"image_data": base64.b64encode(image_bytes()).decode(), "metadata": BEACH}
    response = post_json(client, body)

    assert response.status_code == 201, response.body
    record = response.json_body
    assert (record["user_id"], record["tags"]) == ("123", ["travel", "beach"])
    assert record["metadata"] == {"caption": "Beach vibes"}

    body = {**body, "user_id": "alice", "tags": []}
    record = post_json(client, body).json_body
    assert (record["user_id"], record["tags"]) == ("alice", [])  # the body's fields win
    assert record["metadata"] == {"caption": "Beach vibes"}


def test_metadata_user_id_wins_over_the_header(client: Client) -> None:
    # The header is the caller's default identity; a body that names an owner (in a
    # field or its metadata) names it, as a user_id field always did.
    response = post_form(
        client, [png_part(), ("metadata", json.dumps(BEACH))], headers={"X-User-Id": "bob"}
    )

    assert response.status_code == 201, response.body
    assert response.json_body["user_id"] == "123"
