"""``PATCH /images/{image_id}`` under races and lost answers, as deterministic
interleavings (``tests/faults.py``): the rival request runs at a chosen moment of the
request under test (just before its transaction is sent), through its own service and
clients; lost answers are injected into the service's own DynamoDB client.

After each: every membership item matches its image, and each image has exactly the
membership items its tags give (:func:`tests.invariants.membership_problems`); nothing
is left of a deleted image; no answer says "not changed" for an edit that may commit.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.errors import ImageNotFoundError
from chalicelib.service import AwsClients, ImageService
from chalicelib.validation import ImagePatch
from tests.faults import CapturedCalls, at_call, lost, script_attempts
from tests.invariants import client_error, inject, membership_problems, snapshot
from tests.unit.conftest import (
    BUCKET,
    SETTINGS,
    TABLE,
    FixedClock,
    build_service,
    post_json,
    upload,
)
from tests.unit.test_consistency import _upload_body
from tests.unit.test_edit import expected_memberships, patch

TWI = "TransactWriteItems"


@pytest.fixture
def rival(aws_clients: AwsClients, clock: FixedClock) -> ImageService:
    """Another Lambda instance: the same table and bucket, its own clients (no faults)."""
    return build_service(AwsClients.from_settings(SETTINGS), clock)


def _sound(service: ImageService) -> None:
    problems = membership_problems(boto3.client("dynamodb"), TABLE, expected_memberships(service))
    assert problems == []


def _stored(client: Client, image_id: str) -> dict[str, Any]:
    view = client.http.get(f"/images/{image_id}?metadata_only=true")
    assert view.status_code == 200, view.body
    body: dict[str, Any] = view.json_body
    return body


def test_two_edits_racing_with_if_match_one_wins_the_other_is_a_412(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    record = upload(client, title="Start", tags=["a", "b"])
    image_id = record["image_id"]
    rival_patch = ImagePatch(title="Rival", tags=["c"])
    at_call(aws_clients.dynamodb, TWI, 0, lambda: rival.edit(image_id, rival_patch, "alice", None))

    response = patch(client, image_id, {"title": "Mine", "tags": ["d"]}, if_match='"1"')

    assert response.status_code == 412, response.body
    stored = _stored(client, image_id)
    assert (stored["title"], stored["tags"], stored["version"]) == ("Rival", ["c"], 2)
    _sound(service)


def test_two_edits_racing_without_if_match_the_later_applies_on_top(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    record = upload(client, title="Start", tags=["a", "b"])
    image_id = record["image_id"]
    rival_patch = ImagePatch(description="from the rival", tags=["c"])
    transactions = at_call(
        aws_clients.dynamodb, TWI, 0, lambda: rival.edit(image_id, rival_patch, "alice", None)
    )

    response = patch(client, image_id, {"title": "Mine", "tags": ["d", "e"]})

    assert response.status_code == 200, response.body
    assert len(transactions.calls) == 2  # lost the race once, then applied on version 2
    assert response.headers["ETag"] == '"3"'
    edited = response.json_body
    assert (edited["title"], edited["description"], edited["tags"]) == (
        "Mine",
        "from the rival",
        ["d", "e"],
    )
    assert _stored(client, image_id) == edited
    _sound(service)


def test_an_edit_that_keeps_losing_the_race_is_a_409(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    image_id = upload(client)["image_id"]
    for number in range(3):
        at_call(
            aws_clients.dynamodb,
            TWI,
            number,
            lambda: rival.edit(image_id, ImagePatch(title="rival"), "alice", None),
        )

    response = patch(client, image_id, {"title": "Mine"})

    assert response.status_code == 409, response.body
    assert response.json_body["Message"].startswith("image_id: other changes")
    assert _stored(client, image_id)["version"] == 4
    _sound(service)


def test_a_delete_between_the_edits_read_and_write_is_a_404_and_leaves_nothing(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    image_id = upload(client, tags=["a", "b"])["image_id"]
    at_call(aws_clients.dynamodb, TWI, 0, lambda: rival.delete(image_id, "alice"))

    response = patch(client, image_id, {"tags": ["c", "d"]})

    assert response.status_code == 404, response.body
    state = snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)
    assert (state.items, state.objects) == ({}, {})  # no membership resurrected, no orphan


def test_an_edit_between_a_deletes_read_and_write_is_deleted_with_its_new_tags(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    """The delete read the old tags; the edit moved the image to new ones before the
    delete's transaction: that transaction (conditioned on the version) fails, the
    delete reads again and removes the new membership items too."""
    image_id = upload(client, tags=["a", "b"])["image_id"]
    at_call(
        aws_clients.dynamodb,
        TWI,
        0,
        lambda: rival.edit(image_id, ImagePatch(tags=["c", "d", "e"]), "alice", None),
    )

    response = client.http.delete(f"/images/{image_id}", headers={"X-User-Id": "alice"})

    assert response.status_code == 200, response.body
    state = snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)
    assert (state.items, state.objects) == ({}, {})


def test_an_edit_before_the_uploads_commit_is_a_404_and_after_it_applies(
    client: Client, service: ImageService, aws_clients: AwsClients, rival: ImageService
) -> None:
    transactions = CapturedCalls(aws_clients.dynamodb, TWI)
    refused: list[Exception] = []

    def edit_before_the_commit() -> None:
        image_id = transactions.params[0]["TransactItems"][0]["Put"]["Item"]["image_id"]["S"]
        try:
            rival.edit(image_id, ImagePatch(title="too early"), "alice", None)
        except ImageNotFoundError as exc:
            refused.append(exc)

    at_call(aws_clients.dynamodb, TWI, 0, edit_before_the_commit)

    created = post_json(client, _upload_body())

    assert created.status_code == 201, created.body
    assert len(refused) == 1  # 404: nothing of the image was visible before its commit
    image_id = created.json_body["image_id"]
    assert _stored(client, image_id) == created.json_body
    response = patch(client, image_id, {"title": "after the commit", "tags": ["z"]})
    assert response.status_code == 200, response.body
    assert _stored(client, image_id)["title"] == "after the commit"
    _sound(service)


def test_a_lost_answer_of_an_applied_edit_is_answered_with_the_edit(
    client: Client, service: ImageService, aws_clients: AwsClients
) -> None:
    """The transaction is applied and its answer lost; the retries (same token) and the
    re-drive find the version moved: the read back shows this edit, so it is a 200."""
    image_id = upload(client, tags=["a"])["image_id"]
    script_attempts(aws_clients.dynamodb, TWI, ["applied, lost", "lost", "lost"])

    response = patch(client, image_id, {"title": "Mine", "tags": ["b"]}, if_match='"1"')

    assert response.status_code == 200, response.body
    assert response.headers["ETag"] == '"2"'
    assert _stored(client, image_id) == response.json_body
    _sound(service)


def test_a_lost_answer_that_commits_later_is_answered_unknown_never_not_changed(
    client: Client, service: ImageService, aws_clients: AwsClients
) -> None:
    """Both the transaction and its re-drive lose their answer without being applied,
    and the read finds the old version: the answer says the outcome is unknown and how
    to find out. DynamoDB then applies the first one: the edit is there, and sound."""
    image_id = upload(client, tags=["a"])["image_id"]
    transactions = CapturedCalls(aws_clients.dynamodb, TWI)
    inject(aws_clients.dynamodb, TWI, lost, times=2)

    response = patch(client, image_id, {"title": "Mine", "tags": ["b"]})

    assert response.status_code == 503, response.body
    message = response.json_body["Message"]
    assert message.startswith("dynamodb: saving the edit failed (ReadTimeoutError); ")
    assert f"the edit may have been applied: GET /images/{image_id} tells" in message
    assert '(ETag "2" with updated_at ' in message
    assert _stored(client, image_id)["version"] == 1
    transactions.apply(0)
    stored = _stored(client, image_id)
    assert (stored["title"], stored["tags"], stored["version"]) == ("Mine", ["b"], 2)
    _sound(service)


def test_a_lost_answer_then_a_redrive_that_commits_is_a_200(
    client: Client, service: ImageService, aws_clients: AwsClients
) -> None:
    image_id = upload(client, tags=["a"])["image_id"]
    inject(aws_clients.dynamodb, TWI, lost, times=1)

    response = patch(client, image_id, {"tags": ["b", "c"]})

    assert response.status_code == 200, response.body
    assert _stored(client, image_id) == response.json_body
    _sound(service)


def test_an_error_answer_is_not_changed(
    client: Client, service: ImageService, aws_clients: AwsClients
) -> None:
    record = upload(client, tags=["a"])
    dynamodb = aws_clients.dynamodb
    inject(
        dynamodb,
        TWI,
        lambda: client_error(
            dynamodb,
            "TransactionCanceledException",
            TWI,
            CancellationReasons=[{"Code": "ThrottlingError"}],
        ),
    )

    response = patch(client, record["image_id"], {"tags": ["b"]})

    assert response.status_code == 503, response.body
    assert response.json_body["Message"].endswith("; the image was not changed; retry")
    assert _stored(client, record["image_id"]) == record
    _sound(service)
