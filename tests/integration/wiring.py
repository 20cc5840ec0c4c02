"""An ``ImageService`` wired exactly as in production (``AwsClients.from_settings``) to an
emulator over real HTTP, on a bucket and table of its own; and upload requests for it."""

from __future__ import annotations

import io
import uuid

import pytest
from botocore.config import Config
from PIL import Image

from chalicelib.config import Settings
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService
from chalicelib.validation import UploadRequest
from scripts.emulator import DUMMY_CREDENTIALS

TOKEN_SECRET = "integration-token-secret-of-32-bytes!"


def wire_service(
    endpoint_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    config: Config | None = None,
) -> tuple[ImageService, AwsClients]:
    """A service on a new bucket and table (named ``{prefix}-{random}``) at ``endpoint_url``.

    The endpoint and dummy credentials reach boto3 through its own environment variables,
    as in a deployed or ``make run`` process; the clients keep them once created.
    ``config`` is passed on to :meth:`AwsClients.from_settings`.
    """
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        bucket_name=name, table_name=name, token_secret=TOKEN_SECRET, s3_path_style=True
    )
    clients = AwsClients.from_settings(settings, config)
    service = ImageService.from_settings(settings, clients)
    service.storage.create_bucket()
    create_table(clients.dynamodb, name)
    return service, clients


def png(seed: int) -> bytes:
    """A small PNG whose bytes differ for every ``seed`` below 2**24."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (seed & 255, (seed >> 8) & 255, (seed >> 16) & 255)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def upload_request(data: bytes, user_id: str, tags: list[str]) -> UploadRequest:
    """A validated upload of ``data`` (as the multipart form would give it)."""
    return UploadRequest(
        data=data,
        image_field="file",
        filename="photo.png",
        declared_content_type=None,
        content_type_field="file",
        user_id=user_id,
        title=f"by {user_id}",
        description="",
        tags=tags,
        metadata={},
    )
