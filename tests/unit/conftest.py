"""Unit fixtures: the Chalice test client over moto's in-process AWS (``mock_aws``).

Each test gets a fresh bucket and table created from ``chalicelib.schema``, and an
``ImageService`` built from its own boto3 clients and installed with
``app.use_service`` (the same injection point production uses).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from PIL import Image
from urllib3 import encode_multipart_formdata

import app as app_module
from chalicelib.config import Settings
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService

BUCKET = "unit-test-images"
TABLE = "unit-test-images"


class FixedClock:
    """A clock tests move by hand; each call advances it by one millisecond so that
    uploads in one test get distinct, increasing ``created_at`` values."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class Sleeps:
    """The service's ``sleep`` in tests: never sleeps; records each pause asked for
    (seconds) in ``pauses`` and runs ``then`` (if set) instead, so a test decides what
    happens while ``complete`` waits (e.g. the arrival it waits for finishes)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.then: Callable[[], None] | None = None

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if self.then is not None:
            self.then()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 24), **save: Any) -> bytes:
    """A real image encoded by Pillow (``fmt`` is a Pillow format name)."""
    mode = "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 60)).save(buffer, fmt, **save)
    return buffer.getvalue()


SETTINGS = Settings(
    bucket_name=BUCKET,
    table_name=TABLE,
    token_secret="t" * 32,
    max_image_bytes=256 * 1024,
    max_image_pixels=4_000_000,
    # Sharded, as deployed, but with few shards: every listing of a unit test goes
    # through the k-way merge without the deployed default's 49 Queries a round.
    feed_shards=4,
    tag_shards=3,
)
START = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def use_fake_aws_environment(env: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no endpoint variables, so boto3 talks to ``mock_aws`` only."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        env.delenv(name, raising=False)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")


def create_resources(clients: AwsClients) -> None:
    """The bucket and the table (from ``chalicelib.schema``) of ``SETTINGS``."""
    ImageService.from_settings(SETTINGS, clients).storage.create_bucket()
    create_table(clients.dynamodb, TABLE)


def build_service(clients: AwsClients, clock: FixedClock) -> ImageService:
    """An ``ImageService`` on ``clients`` with ``SETTINGS`` and a hand-moved clock."""
    wired = ImageService.from_settings(SETTINGS, clients)
    return ImageService(wired.storage, wired.metadata, SETTINGS, clock=clock)


@pytest.fixture
def settings() -> Settings:
    return SETTINGS


@pytest.fixture
def sleep() -> Sleeps:
    return Sleeps()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use_fake_aws_environment(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def aws_clients(aws: None, settings: Settings) -> AwsClients:
    """The service's own boto3 clients (tests inject faults into these), with the bucket
    and the table created."""
    clients = AwsClients.from_settings(settings)
    create_resources(clients)
    return clients


@pytest.fixture
def service(
    aws_clients: AwsClients, clock: FixedClock, settings: Settings, sleep: Sleeps
) -> ImageService:
    """The service on :func:`aws_clients`, with ``settings``, ``clock`` and ``sleep`` (a
    module overrides any of these fixtures to change them)."""
    wired = ImageService.from_settings(settings, aws_clients)
    return ImageService(wired.storage, wired.metadata, settings, clock=clock, sleep=sleep)


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3")


@pytest.fixture
def client(service: ImageService) -> Iterator[Client]:
    app_module.use_service(service)
    with Client(app_module.app) as test_client:
        yield test_client
    app_module.use_service(None)


def post_json(
    client: Client,
    body: dict[str, Any],
    path: str = "/images",
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``body`` as JSON."""
    return client.http.post(
        path, headers={"Content-Type": "application/json", **(headers or {})}, body=json.dumps(body)
    )


def post_form(
    client: Client,
    fields: list[tuple[str, Any]],
    path: str = "/images",
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``fields`` as multipart/form-data; a file is ``(name, (filename, bytes, type))``."""
    body, content_type = encode_multipart_formdata(fields)
    return client.http.post(
        path, headers={"Content-Type": content_type, **(headers or {})}, body=body
    )


def upload(
    client: Client, user_id: str = "alice", data: bytes | None = None, **fields: Any
) -> dict[str, Any]:
    """Upload through the JSON form and return the created record (asserts 201)."""
    body = {
        "image_base64": base64.b64encode(data or image_bytes()).decode(),
        "filename": "photo.png",
        "user_id": user_id,
        **fields,
    }
    response = post_json(client, body)
    assert response.status_code == 201, response.body
    record: dict[str, Any] = response.json_body
    return record
