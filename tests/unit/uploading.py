"""Helpers for direct-upload tests: a clock near real time, starting an upload, posting
its bytes to S3 with the presigned POST, and the S3 notification.

Why a clock near real time: S3 stamps ``LastModified`` with the real time, and ingest
refuses bytes that arrived after the upload's ``expires_at`` (computed from the
service's clock); conftest's :class:`~tests.unit.conftest.FixedClock` starts in the
past, so an upload started with it would look expired.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from chalice.test import Client

from tests.unit.conftest import BUCKET, image_bytes


class MovingClock:
    """The real time plus ``offset``, which a test moves (e.g. past a grace period)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def start_upload(client: Client, user_id: str = "alice", **fields: Any) -> dict[str, Any]:
    """``POST /uploads`` (asserts 201); the body: ``upload_id``, ``image_id``, ``upload``."""
    body = {"user_id": user_id, "filename": "photo.png", "tags": ["a", "b"], **fields}
    response = client.http.post(
        "/uploads", headers={"Content-Type": "application/json"}, body=json.dumps(body)
    )
    assert response.status_code == 201, response.body
    started: dict[str, Any] = response.json_body
    return started


def post_bytes(started: dict[str, Any], data: bytes | None = None) -> None:
    """Send the bytes as a browser would: the presigned POST's fields, then the file
    (``mock_aws`` serves the S3 URL in-process)."""
    upload = started["upload"]
    response = requests.post(
        upload["url"],
        data=upload["fields"],
        files={upload["file_field"]: ("photo.png", data or image_bytes(), "image/png")},
        timeout=10,
    )
    assert response.status_code in (200, 201, 204), response.text


def upload_key(started: dict[str, Any]) -> str:
    """The S3 key the upload's bytes are posted to."""
    key: str = started["upload"]["fields"]["key"]
    return key


def s3_event(client: Client, key: str) -> Any:
    """Deliver the bucket's ObjectCreated notification for ``key`` to ``on_upload_created``."""
    return client.lambda_.invoke(
        "on_upload_created", client.events.generate_s3_event(bucket=BUCKET, key=key)
    )


def complete(client: Client, upload_id: str, user_id: str = "alice") -> Any:
    """``POST /uploads/{upload_id}/complete`` as ``user_id``."""
    return client.http.post(
        f"/uploads/{upload_id}/complete",
        headers={"Content-Type": "application/json", "X-User-Id": user_id},
        body="{}",
    )


def status(client: Client, upload_id: str) -> dict[str, Any]:
    """``GET /uploads/{upload_id}`` (asserts 200)."""
    response = client.http.get(f"/uploads/{upload_id}")
    assert response.status_code == 200, response.body
    body: dict[str, Any] = response.json_body
    return body
