"""``POST /images`` carries what a deployed stack can carry (issue 9, SPEC ``POST /images``).

``MAX_REQUEST_BYTES`` is derived from Lambda's 6,291,456-byte invocation payload, the
base64 expansion of binary bodies and the event's envelope; the app refuses a larger
body itself, before parsing it, with a 413 naming ``POST /uploads``. ``MAX_IMAGE_BYTES``
is a separate check on the image, with its own message. The tests use a service whose
limits are small (``Settings`` override) so that bodies stay small.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client

import app as app_module
from chalicelib import config
from chalicelib.config import MAX_REQUEST_BYTES, Settings
from chalicelib.service import ImageService
from tests.unit.conftest import BUCKET, SETTINGS, TABLE, image_bytes, post_form

REQUEST_LIMIT = 64 * 1024
IMAGE_LIMIT = 32 * 1024
PATHS = ["/images", "/images/upload"]


@pytest.fixture
def small_client(service: ImageService) -> Iterator[Client]:
    settings = dataclasses.replace(
        SETTINGS, max_request_bytes=REQUEST_LIMIT, max_image_bytes=IMAGE_LIMIT
    )
    small = ImageService(service.storage, service.metadata, settings)
    app_module.use_service(small)
    with Client(app_module.app) as client:
        yield client
    app_module.use_service(None)


def counts() -> tuple[int, int]:
    objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET)["KeyCount"]
    items = boto3.client("dynamodb").scan(TableName=TABLE, Select="COUNT")["Count"]
    return objects, items


def padded_png(total: int) -> bytes:
    data = image_bytes()
    return data + b"\0" * (total - len(data))


def json_body(total: int, field: str = "image_base64") -> str:
    """A JSON upload of a small PNG, padded with a description to ``total`` bytes."""
    document: dict[str, Any] = {
        field: base64.b64encode(image_bytes()).decode(),
        "user_id": "alice",
        "description": "",
    }
    document["description"] = "x" * (total - len(json.dumps(document)))
    body = json.dumps(document)
    assert len(body) == total
    return body


def test_the_limit_is_what_lambda_carries_base64_encoded_with_its_envelope() -> None:
    assert MAX_REQUEST_BYTES == 4_669_440
    assert config.LAMBDA_PAYLOAD_LIMIT_BYTES == 6_291_456
    # The base64 of the largest body, plus the envelope, fits Lambda's payload limit;
    # one more 3-byte group would not.
    encoded = 4 * -(-MAX_REQUEST_BYTES // 3)
    assert encoded + config.EVENT_ENVELOPE_BYTES <= config.LAMBDA_PAYLOAD_LIMIT_BYTES
    assert encoded + 4 + config.EVENT_ENVELOPE_BYTES > config.LAMBDA_PAYLOAD_LIMIT_BYTES
    assert MAX_REQUEST_BYTES < 4.5 * 1024 * 1024  # "about 4.5 MiB" (SPEC)


def test_settings_default_to_it_and_the_environment_cannot_raise_it() -> None:
    env = {"BUCKET_NAME": "b", "TABLE_NAME": "t", "TOKEN_SECRET": "s" * 32}
    assert Settings.from_env(env).max_request_bytes == MAX_REQUEST_BYTES
    assert Settings("b", "t", "s" * 32).max_request_bytes == MAX_REQUEST_BYTES
    # The image limit is larger by default: images up to it go through POST /uploads.
    assert Settings.from_env(env).max_image_bytes == 50 * 1024 * 1024


@pytest.mark.parametrize("path", PATHS)
def test_a_multipart_body_over_the_request_limit_is_413_naming_post_uploads(
    small_client: Client, path: str
) -> None:
    before = counts()
    # A small image; the form fields alone push the body over the request limit.
    response = post_form(
        small_client,
        [
            ("file", ("a.png", image_bytes(), "image/png")),
            ("user_id", "alice"),
            ("description", "x" * REQUEST_LIMIT),
        ],
        path=path,
    )
    assert response.status_code == 413, response.body
    message = response.json_body["Message"]
    assert message.startswith("body: the request is ")
    assert f"at most {REQUEST_LIMIT} bytes" in message
    assert "POST /uploads" in message
    assert "image" not in message.split(";")[0]  # not the image limit's message
    assert counts() == before


@pytest.mark.parametrize("path", PATHS)
def test_a_json_body_over_the_request_limit_is_413_naming_post_uploads(
    small_client: Client, path: str
) -> None:
    before = counts()
    response = small_client.http.post(
        path,
        headers={"Content-Type": "application/json"},
        body=json_body(REQUEST_LIMIT + 1),
    )
    assert response.status_code == 413, response.body
    assert response.json_body["Message"].startswith(
        f"body: the request is {REQUEST_LIMIT + 1} bytes; POST /images carries at most "
        f"{REQUEST_LIMIT} bytes"
    )
    assert "send larger images with POST /uploads" in response.json_body["Message"]
    assert counts() == before


def test_a_body_of_exactly_the_request_limit_is_parsed(small_client: Client) -> None:
    response = small_client.http.post(
        "/images", headers={"Content-Type": "application/json"}, body=json_body(REQUEST_LIMIT)
    )
    # Within the limit: refused by the description's own rule, not by the size.
    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith("description: is ")


def test_an_image_over_the_image_limit_gets_the_image_limit_message(
    small_client: Client,
) -> None:
    before = counts()
    response = post_form(
        small_client,
        [("file", ("big.png", padded_png(IMAGE_LIMIT + 1), "image/png")), ("user_id", "alice")],
    )
    assert response.status_code == 413, response.body
    assert response.json_body["Message"] == (
        f"file: the image is {IMAGE_LIMIT + 1} bytes, the limit is {IMAGE_LIMIT} bytes"
    )
    assert counts() == before


@pytest.mark.parametrize("field", ["image_base64", "image_data"])
def test_a_too_large_json_image_names_the_field_the_client_used(
    small_client: Client, field: str
) -> None:
    # 40 KiB of image is 54 KiB of base64: under the request limit, over the image limit.
    encoded = base64.b64encode(padded_png(40 * 1024)).decode()
    response = small_client.http.post(
        "/images",
        headers={"Content-Type": "application/json"},
        body=json.dumps({field: encoded, "user_id": "alice"}),
    )
    assert response.status_code == 413, response.body
    assert response.json_body["Message"] == (
        f"{field}: the image is {40 * 1024} bytes, the limit is {IMAGE_LIMIT} bytes"
    )
