"""``POST /uploads`` when DynamoDB's answer is lost (issue 15): the start path follows
the image commit's rule (SPEC, *Consistency*).

The PutItem that writes the pending upload item is scripted attempt by attempt inside
botocore's retry loop (``tests/faults.py``): an attempt applied whose answer is lost, an
attempt lost before it reached the table, a 500 (DynamoDB failed while handling it),
an error answer that proves nothing was written. Afterwards the answer must be true:
201 for an upload whose item exists (a retried conditional write finding its own item
is not a conflict), never "no upload was started" for an item that may exist, and a 409
only for another upload with the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib import uploads
from chalicelib.service import AwsClients
from tests.faults import Attempt, CapturedCalls, script_attempts
from tests.invariants import client_error, inject
from tests.unit.conftest import TABLE, post_json

START = "dynamodb: starting the upload failed"
NOT_STARTED = "no upload was started; retry"


def start(client: Client, title: str = "Beach") -> Any:
    """``POST /uploads`` with every field the upload item keeps (so comparing the stored
    item with the one written covers each one's round trip through DynamoDB)."""
    body = {
        "user_id": "alice",
        "title": title,
        "description": "",
        "filename": "beach.png",
        "tags": "sea,sun",
        "metadata": {"camera": "X100"},
        "content_type": "image/heif",
        "size_bytes": 1234,
        "sha256": "ab" * 32,
    }
    return post_json(client, body, path="/uploads")


def upload_items() -> list[dict[str, Any]]:
    """The upload items in the table, read behind the service's back."""
    items = boto3.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return [item for item in items if item["pk"]["S"].startswith("UPLOAD#")]


def _error(dynamodb: Any, code: str) -> Callable[[], Exception]:
    return lambda: client_error(dynamodb, code, "PutItem")


@pytest.mark.parametrize(
    "attempts",
    [
        # Applied, answer lost; botocore's retry finds the item: its own, not a conflict
        # (answered 409 "already exists" before).
        ["applied, lost"],
        # Every attempt lost, the first applied: the re-drive finds its own item
        # (answered 503 "no upload was started" before).
        ["applied, lost", "lost", "lost"],
        # Every attempt lost, none applied: the re-drive writes it.
        ["lost", "lost", "lost"],
        # Applied, then 500s (DynamoDB failed while handling them): may have been
        # applied, the re-drive finds it.
        ["applied, lost", "500", "500"],
        # A 500 alone: may have been applied; the re-drive writes it.
        ["500"],
        # Applied, then lost again and again, the re-drive's attempts too: the
        # consistent read finds it.
        ["applied, lost", "lost", "lost", "lost", "lost", "lost"],
    ],
    ids=[
        "applied-lost-then-retried",
        "applied-then-all-lost",
        "all-lost-unapplied",
        "applied-then-500s",
        "500-then-sent",
        "applied-redrive-lost-read-decides",
    ],
)
def test_a_start_whose_answer_was_lost_is_answered_201_with_its_one_upload(
    attempts: list[str], client: Client, aws_clients: AwsClients
) -> None:
    dynamodb = aws_clients.dynamodb
    script: list[Attempt] = [
        _error(dynamodb, "InternalServerError") if step == "500" else step for step in attempts
    ]
    script_attempts(dynamodb, "PutItem", script)

    response = start(client)

    assert response.status_code == 201, response.body
    (item,) = upload_items()
    assert item["upload_id"]["S"] == response.json_body["upload_id"]
    assert item["status"]["S"] == "pending"
    status = client.http.get(f"/uploads/{response.json_body['upload_id']}")
    assert status.json_body["status"] == "pending"


def test_a_start_that_cannot_be_decided_names_the_upload_and_never_says_not_started(
    client: Client, aws_clients: AwsClients
) -> None:
    """Every attempt lost (none applied), the re-drive too, and the consistent read
    fails: the item may still land, so the answer names the upload that may exist; when
    it lands, it is that pending upload."""
    dynamodb = aws_clients.dynamodb
    puts = CapturedCalls(dynamodb, "PutItem")
    script_attempts(dynamodb, "PutItem", ["lost"] * 6)
    inject(dynamodb, "GetItem", _error(dynamodb, "InternalServerError"), times=1)

    response = start(client)

    assert response.status_code == 503, response.body
    message = response.json_body["Message"]
    assert NOT_STARTED not in message
    upload_id = puts.params[0]["Item"]["upload_id"]["S"]
    assert message == (
        f"{START} (ReadTimeoutError); the upload may have been started as {upload_id} "
        f"(GET /uploads/{upload_id} tells; it expires unused); start another"
    )
    assert upload_items() == []
    puts.apply(0)  # the write DynamoDB still had in flight lands
    assert client.http.get(f"/uploads/{upload_id}").json_body["status"] == "pending"


def test_an_error_answer_alone_is_not_started(client: Client, aws_clients: AwsClients) -> None:
    """Throttled on every attempt and no answer lost: nothing was written, and the
    answer says so."""
    dynamodb = aws_clients.dynamodb
    throttled = _error(dynamodb, "ProvisionedThroughputExceededException")
    script_attempts(dynamodb, "PutItem", [throttled] * 3)

    response = start(client)

    assert response.status_code == 503, response.body
    assert response.json_body["Message"] == (
        f"{START} (ProvisionedThroughputExceededException, throttled); {NOT_STARTED}"
    )
    assert upload_items() == []


def test_another_upload_with_the_same_id_is_still_a_409(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real conflict: the stored item is another upload's, not this one's."""
    fixed = uuid.UUID("6f1c2a55-0a77-4d0e-9a55-2a3f1d1e0c11")
    monkeypatch.setattr(uploads.uuid, "uuid4", lambda: fixed)
    assert start(client, title="first").status_code == 201

    response = start(client, title="second")

    assert response.status_code == 409, response.body
    assert response.json_body["Message"] == f"upload_id: {fixed} already exists"
    (item,) = upload_items()
    assert item["title"]["S"] == "first"
