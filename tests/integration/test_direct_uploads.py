"""Direct uploads over real HTTP: ``chalice local`` (started by ``make run``'s script),
moto's server, and this test process as the client that posts the bytes to S3.

The presigned POST is sent with ``requests`` exactly as a browser or a mobile client
would (every field, then the file), to the URL the API returned; the bytes never pass
through the API. Renditions are fetched back over HTTP from their presigned URLs.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from typing import Any

import pytest
import requests
from PIL import Image

from chalicelib.config import MIB
from tests.integration.support import Stack

pytestmark = pytest.mark.integration

TIMEOUT = 120  # seconds, for every HTTP call (the 50 MiB ones included)


def _user() -> dict[str, str]:
    return {"X-User-Id": f"du-{uuid.uuid4().hex[:12]}"}


def _start(stack: Stack, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = requests.post(stack.url("/uploads"), json=fields, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _post(upload: dict[str, Any], data: bytes, filename: str) -> requests.Response:
    form = upload["upload"]
    return requests.post(
        form["url"],
        data=form["fields"],
        files={form["file_field"]: (filename, data)},
        timeout=TIMEOUT,
    )


def _complete(stack: Stack, upload: dict[str, Any], headers: dict[str, str]) -> requests.Response:
    return requests.post(
        stack.url(f"/uploads/{upload['upload_id']}/complete"), headers=headers, timeout=TIMEOUT
    )


def _noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG: its size in bytes is about ``width * height * 3``."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_presigned_post_from_the_client_then_complete(stack: Stack) -> None:
    headers = _user()
    data = _noise_png(1200, 800)
    upload = _start(stack, headers, title="Direct", tags=["direct"], size_bytes=len(data))

    posted = _post(upload, data, "direct.png")
    completed = _complete(stack, upload, headers)

    assert posted.status_code in (200, 201, 204), posted.text
    # make run delivers the S3 event as well: complete is 201, or 200 if the event's
    # ingest finished first (SPEC); the record is the same either way.
    assert completed.status_code in (200, 201), completed.text
    record = completed.json()
    assert record["image_id"] == upload["image_id"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest()  # nothing to strip in a PNG
    view = requests.get(stack.url(f"/images/{record['image_id']}"), timeout=TIMEOUT).json()
    original = requests.get(view["download_url"], timeout=TIMEOUT)
    assert original.content == data
    sizes = []
    for rendition in view["renditions"]:
        fetched = requests.get(rendition["url"], timeout=TIMEOUT)
        assert fetched.status_code == 200
        with Image.open(io.BytesIO(fetched.content)) as image:
            assert image.format == "WEBP"
            assert image.size == (rendition["width"], rendition["height"])
            sizes.append(max(image.size))
    assert sizes == [320, 640, 1080]
    status = requests.get(stack.url(f"/uploads/{upload['upload_id']}"), timeout=TIMEOUT).json()
    assert status["status"] == "ready"
    assert status["image"] == record


def test_a_50_mib_image_goes_through_uploads_and_the_same_bytes_are_413_on_post_images(
    stack: Stack,
) -> None:
    headers = _user()
    data = _noise_png(4096, 4096)  # 16.7 MP, about 48 MiB
    assert 45 * MIB < len(data) <= 50 * MIB

    upload = _start(stack, headers, filename="big.png", size_bytes=len(data))
    posted = _post(upload, data, "big.png")
    completed = _complete(stack, upload, headers)
    through_the_api = requests.post(
        stack.url("/images"),
        headers=headers,
        files={"file": ("big.png", data, "image/png")},
        timeout=TIMEOUT,
    )

    assert posted.status_code in (200, 201, 204), posted.text
    # make run delivers the S3 event as well: complete is 201, or 200 if the event's
    # ingest finished first (SPEC); the record is the same either way.
    assert completed.status_code in (200, 201), completed.text
    record = completed.json()
    assert (record["width"], record["height"], record["size_bytes"]) == (4096, 4096, len(data))
    assert through_the_api.status_code == 413, through_the_api.text
    assert "POST /uploads" in through_the_api.json()["Message"]
