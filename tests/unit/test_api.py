"""Every endpoint through the Chalice test client, over moto's in-process S3 and DynamoDB."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, unquote, urlparse

import boto3

from chalicelib.keys import sharded
from tests.unit.conftest import BUCKET, SETTINGS, TABLE, image_bytes, post_form, post_json, upload

RECORD_FIELDS = {
    "frames",
    "taken_at",
    "placeholder",
    "dominant_color",
    "renditions",
    "image_id",
    "user_id",
    "title",
    "description",
    "tags",
    "metadata",
    "filename",
    "content_type",
    "size_bytes",
    "width",
    "height",
    "sha256",
    "s3_key",
    "created_at",
    "updated_at",
    "version",
}


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}


def _table_items() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=TABLE)["Items"]


def test_json_upload_stores_bytes_and_returns_the_record(client, s3):
    data = image_bytes("JPEG", (64, 48))
    response = post_json(
        client,
        {
            "image_base64": base64.b64encode(data).decode(),
            "filename": "beach.jpg",
            "content_type": "image/jpeg",
            "user_id": "alice",
            "title": "Beach day",
            "description": "Waves",
            "tags": ["Beach", "summer"],
            "metadata": {"caption": "hello", "camera": "X100"},
        },
    )

    assert response.status_code == 201
    record = response.json_body
    assert set(record) == RECORD_FIELDS
    assert response.headers["Location"] == f"/images/{record['image_id']}"
    assert record["user_id"] == "alice"
    assert record["tags"] == ["beach", "summer"]
    assert record["metadata"] == {"caption": "hello", "camera": "X100"}
    assert (record["content_type"], record["width"], record["height"]) == ("image/jpeg", 64, 48)
    assert record["size_bytes"] == len(data)
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["created_at"] == "2026-11-21T10:30:00.001Z" == record["updated_at"]
    stored = s3.get_object(Bucket=BUCKET, Key=record["s3_key"])
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/jpeg"


def test_multipart_upload_with_every_field(client, s3):
    data = image_bytes("WEBP", (20, 10))
    response = post_form(
        client,
        [
            ("user_id", "bob"),
            ("title", "Cat"),
            ("description", "A cat"),
            ("tags", "Cat, pets"),
            ("tags", "indoor"),
            ("metadata", json.dumps({"camera": "Pixel"})),
            ("file", ("cat.webp", data, "image/webp")),
        ],
    )

    assert response.status_code == 201, response.body
    record = response.json_body
    assert record["tags"] == ["cat", "pets", "indoor"]
    assert record["metadata"] == {"camera": "Pixel"}
    assert (record["filename"], record["content_type"]) == ("cat.webp", "image/webp")
    assert s3.get_object(Bucket=BUCKET, Key=record["s3_key"])["Body"].read() == data


def test_upload_writes_the_image_item_and_one_item_per_tag_and_tag_pair(client):
    record = upload(client, tags=["b", "a", "c"])

    items = _table_items()
    keys = {(item["pk"]["S"], item["sk"]["S"]) for item in items}
    sort_key = f"{record['created_at']}#{record['image_id']}"
    tag_shards = SETTINGS.tag_shards
    assert keys == {
        (f"IMAGE#{record['image_id']}", "META"),
        *(
            (sharded(f"TAG#{partition}", record["image_id"], tag_shards), sort_key)
            for partition in ["a", "b", "c", "a+b", "a+c", "b+c"]
        ),
        # The upload's month, and the next one marked ahead of its first upload.
        ("FEEDMONTHS", "2026-11"),
        ("FEEDMONTHS", "2026-12"),
    }
    [image] = [item for item in items if item["pk"]["S"].startswith("IMAGE#")]
    feed = sharded("FEED#2026-11", record["image_id"], SETTINGS.feed_shards)
    assert image["gsi2pk"]["S"] == feed and feed.startswith("FEED#2026-11#")
    assert image["shards"]["M"] == {
        "feed": {"N": str(SETTINGS.feed_shards)},
        "tag": {"N": str(tag_shards)},
    }


def test_view_returns_record_and_presigned_url(client):
    record = upload(client)

    response = client.http.get(f"/images/{record['image_id']}")

    assert response.status_code == 200
    body = response.json_body
    assert {k: body[k] for k in RECORD_FIELDS - {"renditions"}} == {
        k: v for k, v in record.items() if k != "renditions"
    }
    assert [{k: v for k, v in r.items() if k != "url"} for r in body["renditions"]] == record[
        "renditions"
    ]
    assert all(r["url"].startswith("https://") for r in body["renditions"])
    # The clock reads 10:30 (conftest.START): the URLs of the 10:00-11:00 window live
    # until 11:00 + 900 s, that is 2700 s from now; signed as of 10:00 for 3600 + 900 s.
    assert body["expires_in"] == 1800 + 900
    url = body["download_url"]
    # No endpoint override here, so virtual-hosted style: bucket in the host name.
    assert urlparse(url).hostname.startswith(f"{BUCKET}.s3.")
    assert urlparse(url).path == f"/{record['s3_key']}"
    params = _query(url)
    assert params["X-Amz-Expires"] == str(3600 + 900)
    assert params["X-Amz-Date"] == "20261121T100000Z"
    assert "X-Amz-Signature" in params
    assert "response-content-disposition" not in params


def test_view_expires_in_and_download_disposition(client):
    record = upload(client, filename="Ünïcode photo.png")

    body = client.http.get(f"/images/{record['image_id']}?expires_in=120&download=true").json_body

    params = _query(body["download_url"])
    assert body["expires_in"] == 1800 + 120
    assert params["X-Amz-Expires"] == str(3600 + 120)
    disposition = params["response-content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''" + "%C3%9Cn%C3%AFcode%20photo.png" in disposition


def test_view_metadata_only_has_no_url(client):
    record = upload(client)

    body = client.http.get(f"/images/{record['image_id']}?metadata_only=true").json_body

    assert "download_url" not in body
    assert "expires_in" not in body
    assert body["image_id"] == record["image_id"]


def test_download_redirects_to_an_attachment_url(client):
    record = upload(client, filename="cat.png")

    response = client.http.get(f"/images/{record['image_id']}/download")

    assert response.status_code == 302
    location = response.headers["Location"]
    assert urlparse(location).path.endswith(record["s3_key"])
    assert 'attachment; filename="cat.png"' in unquote(
        _query(location)["response-content-disposition"]
    )


def test_download_unknown_id_is_404(client):
    response = client.http.get("/images/7f1c1f5e-0000-4000-8000-000000000000/download")

    assert response.status_code == 404
    assert response.json_body["Code"] == "NotFoundError"


def test_delete_by_owner_removes_object_and_every_item(client, s3):
    record = upload(client, tags=["a", "b"])

    response = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "alice"})

    assert response.status_code == 200
    assert response.json_body == {"message": "Image deleted", "image_id": record["image_id"]}
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert [item["pk"]["S"] for item in _table_items()] == ["FEEDMONTHS", "FEEDMONTHS"]
    assert client.http.get(f"/images/{record['image_id']}").status_code == 404
    assert client.http.get("/images?tag=a").json_body["items"] == []


def test_delete_identity_from_query_or_json_body(client):
    first, second = upload(client), upload(client)

    by_query = client.http.delete(f"/images/{first['image_id']}?user_id=alice")
    by_body = client.http.delete(
        f"/images/{second['image_id']}",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"user_id": "alice"}),
    )

    assert (by_query.status_code, by_body.status_code) == (200, 200)


def test_delete_with_a_malformed_json_body_is_a_400_naming_the_body(client):
    # Issue 9: a body that says JSON and is not (here cut short) is bad input, as it is
    # for an upload, not "no identity" (it used to be a 401).
    record = upload(client)

    response = client.http.delete(
        f"/images/{record['image_id']}",
        headers={"Content-Type": "application/json"},
        body='{"user_id": ',
    )

    assert response.status_code == 400
    assert response.json_body["Message"].startswith("body: not valid JSON")
    assert client.http.get(f"/images/{record['image_id']}").status_code == 200


def test_delete_without_identity_is_401(client):
    record = upload(client)

    response = client.http.delete(f"/images/{record['image_id']}")

    assert response.status_code == 401
    assert response.json_body["Code"] == "UnauthorizedError"
    assert "X-User-Id" in response.json_body["Message"]
    assert client.http.get(f"/images/{record['image_id']}").status_code == 200


def test_delete_by_another_user_is_403_and_deletes_nothing(client, s3):
    record = upload(client, tags=["a"])

    response = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "mallory"})

    assert response.status_code == 403
    assert response.json_body["Code"] == "ForbiddenError"
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1 + len(record["renditions"])
    assert len(_table_items()) == 4  # the image, its tag item, two month markers


def test_delete_unknown_id_is_404(client):
    response = client.http.delete(
        "/images/7f1c1f5e-0000-4000-8000-000000000000", headers={"X-User-Id": "alice"}
    )

    assert response.status_code == 404
    assert response.json_body["Code"] == "NotFoundError"


def test_health_ok(client):
    response = client.http.get("/health")

    assert (response.status_code, response.json_body) == (200, {"status": "ok"})


def test_health_503_names_the_failing_check(client):
    boto3.client("dynamodb").delete_table(TableName=TABLE)

    response = client.http.get("/health")

    assert response.status_code == 503
    assert response.json_body["Code"] == "ServiceUnavailableError"
    assert response.json_body["Message"].startswith("table: ")
    assert "bucket" not in response.json_body["Message"]


def test_unsupported_request_content_type_is_415(client):
    response = client.http.post("/images", headers={"Content-Type": "text/plain"}, body="hi")

    assert response.status_code == 415
