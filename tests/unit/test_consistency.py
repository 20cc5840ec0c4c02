"""Consistency under faults, and the reconcile command.

Every upload and delete ends with a complete image or nothing (or, where the design
accepts it, an invisible orphan object that reconcile reports and ``--fix`` removes), and
answers with an accurate status and message. Faults are injected into the service's own
boto3 clients through botocore's event hooks (``tests/invariants.py``) at every step:
S3 PutObject, the feed-month PutItem, the metadata TransactWriteItems, the compensating
S3 DeleteObject, the delete's GetItem, TransactWriteItems and S3 DeleteObject; as error
answers, throttling, and answers lost after the call took effect.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from chalice.test import Client

from chalicelib.errors import NotOwnerError
from chalicelib.reconcile import ReconcileReport, reconcile
from chalicelib.service import (
    AWS_CONNECT_TIMEOUT_SECONDS,
    AWS_MAX_ATTEMPTS,
    AWS_READ_TIMEOUT_SECONDS,
    AwsClients,
    ImageService,
)
from tests.invariants import (
    Injection,
    Snapshot,
    WrittenKeys,
    client_error,
    complete_problems,
    fail_attempts,
    gone_problems,
    inject,
    snapshot,
)
from tests.unit.conftest import (
    BUCKET,
    SETTINGS,
    TABLE,
    FixedClock,
    build_service,
    create_resources,
    image_bytes,
    post_json,
    upload,
)

Outcome = Literal["complete", "nothing", "orphan object"]


@pytest.fixture
def aws_clients(aws: None) -> AwsClients:
    """The service's clients (faults are injected into these), with bucket and table."""
    clients = AwsClients.from_settings(SETTINGS)
    create_resources(clients)
    return clients


@pytest.fixture
def written(aws_clients: AwsClients) -> WrittenKeys:
    return WrittenKeys(aws_clients.dynamodb)


@pytest.fixture
def service(aws_clients: AwsClients, clock: FixedClock) -> ImageService:
    """Overrides conftest's: the same service, on clients this module can reach."""
    return build_service(aws_clients, clock)


def _state() -> Snapshot:
    """The bucket and table, read through fresh clients (no injected faults)."""
    return snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)


def _later() -> datetime:
    """A time past reconcile's grace period for every object written by the test."""
    return datetime.now(UTC) + timedelta(hours=1)


def _assert_complete(
    client: Client, service: ImageService, written: WrittenKeys, record: dict[str, Any]
) -> None:
    """GET works, and the image item, the items its upload wrote and its bytes are there;
    reconcile finds nothing."""
    state = _state()
    assert complete_problems(state, record, written.of(record["image_id"])) == []
    view = client.http.get(f"/images/{record['image_id']}")
    assert view.status_code == 200
    assert {name: view.json_body[name] for name in record} == record
    assert reconcile(service, now=_later()).clean


def _assert_nothing() -> None:
    state = _state()
    assert state.items == {}
    assert state.objects == {}


def _upload_body() -> dict[str, Any]:
    return {
        "image_base64": base64.b64encode(image_bytes()).decode(),
        "filename": "photo.png",
        "user_id": "alice",
        "tags": ["a", "b"],
    }


# --- fault injection: the cases ---------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure (see :func:`tests.invariants.inject`).

    ``error`` is an AWS error code (an error answer; ``cancellation`` gives a
    ``TransactionCanceledException``'s per-item reasons) or a botocore exception class
    (no answer).
    """

    service: Literal["s3", "dynamodb"]
    operation: str
    error: str | type[Exception]
    after_call: bool = False
    skip: int = 0
    cancellation: tuple[str, ...] = ()

    def apply(self, clients: AwsClients) -> Injection:
        client = clients.s3 if self.service == "s3" else clients.dynamodb

        def build() -> Exception:
            if isinstance(self.error, str):
                extra: dict[str, Any] = {}
                if self.cancellation:
                    extra["CancellationReasons"] = [{"Code": code} for code in self.cancellation]
                return client_error(client, self.error, self.operation, **extra)
            return self.error(endpoint_url="http://injected.invalid")

        return inject(client, self.operation, build, after_call=self.after_call, skip=self.skip)


@dataclass(frozen=True)
class Case:
    """Faults, then what the client must be told and what must be left."""

    faults: tuple[Fault, ...]
    status: int
    message: str | None  # None: a success; ``{id}`` stands for the image id
    outcome: Outcome


NOT_SAVED = "the image was not saved; retry"
S3_PUT = "s3: storing the image failed"
DDB_PUT = "dynamodb: saving the image's metadata failed"
THROTTLED_CANCEL = ("ThrottlingError", "None", "None", "None")
CONDITION_FAILED = ("ConditionalCheckFailed", "None", "None", "None")
CODES = {409: "ConflictError", 404: "NotFoundError", 503: "ServiceUnavailableError"}

UPLOAD_CASES: dict[str, Case] = {
    "s3 put error": Case(
        (Fault("s3", "PutObject", "InternalError"),),
        503,
        f"{S3_PUT} (InternalError); {NOT_SAVED}",
        "nothing",
    ),
    "s3 put throttled": Case(
        (Fault("s3", "PutObject", "SlowDown"),),
        503,
        f"{S3_PUT} (SlowDown, throttled); {NOT_SAVED}",
        "nothing",
    ),
    "s3 unreachable": Case(
        (Fault("s3", "PutObject", EndpointConnectionError),),
        503,
        f"{S3_PUT} (EndpointConnectionError); {NOT_SAVED}",
        "nothing",
    ),
    "month marker put error": Case(
        (Fault("dynamodb", "PutItem", "InternalServerError"),),
        503,
        f"{DDB_PUT} (InternalServerError); {NOT_SAVED}",
        "nothing",
    ),
    "transaction error": Case(
        (Fault("dynamodb", "TransactWriteItems", "InternalServerError"),),
        503,
        f"{DDB_PUT} (InternalServerError); {NOT_SAVED}",
        "nothing",
    ),
    "transaction throttled": Case(
        (Fault("dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException"),),
        503,
        f"{DDB_PUT} (ProvisionedThroughputExceededException, throttled); {NOT_SAVED}",
        "nothing",
    ),
    "transaction cancelled by throttling": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                cancellation=THROTTLED_CANCEL,
            ),
        ),
        503,
        f"{DDB_PUT} (TransactionCanceledException, throttled); {NOT_SAVED}",
        "nothing",
    ),
    "transaction error, undo fails too": Case(
        (
            Fault("dynamodb", "TransactWriteItems", "InternalServerError"),
            Fault("s3", "DeleteObject", "InternalError"),
        ),
        503,
        f"{DDB_PUT} (InternalServerError); {NOT_SAVED}",
        "orphan object",
    ),
    "transaction unanswered, not applied": Case(
        (Fault("dynamodb", "TransactWriteItems", ReadTimeoutError),),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "nothing",
    ),
    "transaction unanswered, applied": Case(
        (Fault("dynamodb", "TransactWriteItems", ReadTimeoutError, after_call=True),),
        201,
        None,
        "complete",
    ),
    "transaction retried after it committed": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                after_call=True,
                cancellation=CONDITION_FAILED,
            ),
        ),
        201,
        None,
        "complete",
    ),
    "transaction conflict": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                cancellation=CONDITION_FAILED,
            ),
        ),
        409,
        "image_id: {id} already exists",
        "nothing",
    ),
    "transaction unanswered, check fails": Case(
        (
            Fault("dynamodb", "TransactWriteItems", ReadTimeoutError),
            Fault("dynamodb", "GetItem", ReadTimeoutError),
        ),
        503,
        f"{DDB_PUT} (ReadTimeoutError); the image may have been saved as {{id}}: "
        "GET /images/{id} tells (404: retry)",
        "orphan object",
    ),
}

NOT_DELETED = "the image was not deleted; retry"
DDB_DELETE = "dynamodb: deleting the image's metadata failed"
DELETE_CANCEL = ("None", "None", "None", "None")

DELETE_CASES: dict[str, Case] = {
    "read error": Case(
        (Fault("dynamodb", "GetItem", "InternalServerError"),),
        503,
        f"dynamodb: reading the image failed (InternalServerError); {NOT_DELETED}",
        "complete",
    ),
    "read throttled": Case(
        (Fault("dynamodb", "GetItem", "ProvisionedThroughputExceededException"),),
        503,
        "dynamodb: reading the image failed "
        f"(ProvisionedThroughputExceededException, throttled); {NOT_DELETED}",
        "complete",
    ),
    "transaction error": Case(
        (Fault("dynamodb", "TransactWriteItems", "InternalServerError"),),
        503,
        f"{DDB_DELETE} (InternalServerError); {NOT_DELETED}",
        "complete",
    ),
    "transaction cancelled by throttling": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                cancellation=THROTTLED_CANCEL,
            ),
        ),
        503,
        f"{DDB_DELETE} (TransactionCanceledException, throttled); {NOT_DELETED}",
        "complete",
    ),
    "transaction conflict": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                cancellation=("TransactionConflict", "None", "None", "None"),
            ),
        ),
        409,
        "image_id: another request changed this image at the same moment; retry",
        "complete",
    ),
    "transaction unanswered, not applied": Case(
        (Fault("dynamodb", "TransactWriteItems", ReadTimeoutError),),
        503,
        f"{DDB_DELETE} (ReadTimeoutError); {NOT_DELETED}",
        "complete",
    ),
    "transaction unanswered, applied": Case(
        (Fault("dynamodb", "TransactWriteItems", ReadTimeoutError, after_call=True),),
        200,
        None,
        "nothing",
    ),
    "transaction retried after it committed": Case(
        (
            Fault(
                "dynamodb",
                "TransactWriteItems",
                "TransactionCanceledException",
                after_call=True,
                cancellation=CONDITION_FAILED,
            ),
        ),
        404,
        "image_id: no image with id '{id}'",
        "nothing",
    ),
    "transaction unanswered, check fails": Case(
        (
            Fault("dynamodb", "TransactWriteItems", ReadTimeoutError),
            Fault("dynamodb", "GetItem", ReadTimeoutError, skip=1),
        ),
        503,
        f"{DDB_DELETE} (ReadTimeoutError); the image may have been deleted: "
        "retry (404 means it was)",
        "complete",
    ),
    "s3 delete error": Case(
        (Fault("s3", "DeleteObject", "InternalError"),), 200, None, "orphan object"
    ),
    "s3 delete throttled": Case(
        (Fault("s3", "DeleteObject", "SlowDown"),), 200, None, "orphan object"
    ),
}


def _assert_orphan_object_then_fix(service: ImageService, s3_key: str) -> None:
    """Only the object at ``s3_key`` is left: invisible, not an orphan yet within the
    grace period, reported after it, and removed by ``--fix``."""
    state = _state()
    assert state.items == {}
    assert list(state.objects) == [s3_key]
    assert reconcile(service).clean
    assert reconcile(service, now=_later()) == ReconcileReport(orphan_objects=[s3_key])
    assert reconcile(service, fix=True, now=_later()).orphan_objects == [s3_key]
    _assert_nothing()
    assert reconcile(service, now=_later()).clean


@pytest.mark.parametrize("case", UPLOAD_CASES.values(), ids=UPLOAD_CASES.keys())
def test_upload_fault_leaves_a_complete_image_or_nothing(
    case: Case, client: Client, aws_clients: AwsClients, written: WrittenKeys, service
):
    injections = [fault.apply(aws_clients) for fault in case.faults]

    response = post_json(client, _upload_body())
    for injection in injections:
        injection.remove()  # reconcile below uses the same clients

    assert response.status_code == case.status, response.body
    image_ids = written.image_ids() or [None]
    if case.message is not None:
        assert response.json_body == {
            "Code": CODES[case.status],
            "Message": case.message.format(id=image_ids[0]),
        }
    if case.outcome == "complete":
        _assert_complete(client, service, written, response.json_body)
    elif case.outcome == "nothing":
        _assert_nothing()
        assert reconcile(service, now=_later()).clean
    else:
        state = _state()
        (s3_key,) = state.objects
        if image_ids[0] is not None:
            assert client.http.get(f"/images/{image_ids[0]}").status_code == 404
        _assert_orphan_object_then_fix(service, s3_key)


@pytest.mark.parametrize("case", DELETE_CASES.values(), ids=DELETE_CASES.keys())
def test_delete_fault_leaves_a_complete_image_or_nothing(
    case: Case, client: Client, aws_clients: AwsClients, written: WrittenKeys, service
):
    record = upload(client, tags=["a", "b"])
    injections = [fault.apply(aws_clients) for fault in case.faults]

    response = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "alice"})
    for injection in injections:
        injection.remove()  # reconcile below uses the same clients

    assert response.status_code == case.status, response.body
    if case.message is None:
        assert response.json_body == {"message": "Image deleted", "image_id": record["image_id"]}
    else:
        message = case.message.format(id=record["image_id"])
        assert response.json_body == {"Code": CODES[case.status], "Message": message}
    if case.outcome == "complete":
        _assert_complete(client, service, written, record)
        return
    assert client.http.get(f"/images/{record['image_id']}").status_code == 404
    assert gone_problems(_state(), record["image_id"], None) == []
    if case.outcome == "nothing":
        _assert_nothing()
        assert reconcile(service, now=_later()).clean
    else:
        _assert_orphan_object_then_fix(service, record["s3_key"])


# --- retries and timeouts ---------------------------------------------------------------


def test_clients_use_standard_retries_and_explicit_timeouts(aws: None):
    settings = replace(SETTINGS, s3_path_style=True, s3_public_endpoint_url="http://s3.example")

    clients = AwsClients.from_settings(settings)

    for aws_client in (clients.s3, clients.dynamodb, clients.s3_presigner):
        config = aws_client.meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS}
        assert config.connect_timeout == AWS_CONNECT_TIMEOUT_SECONDS
        assert config.read_timeout == AWS_READ_TIMEOUT_SECONDS
    for s3_client in (clients.s3, clients.s3_presigner):
        assert s3_client.meta.config.s3 == {"addressing_style": "path"}
        assert s3_client.meta.config.signature_version == "s3v4"
    # One call's worst case (every attempt timing out, plus the throttling backoff of
    # at most 1 s, then 2 s) stays inside API Gateway's 29 s, so we answer, not it.
    worst = AWS_MAX_ATTEMPTS * (AWS_CONNECT_TIMEOUT_SECONDS + AWS_READ_TIMEOUT_SECONDS) + 3
    assert worst < 29


def test_a_dropped_connection_is_retried_with_the_same_transaction_token(
    client: Client, aws_clients: AwsClients, written: WrittenKeys, service: ImageService
):
    attempts = fail_attempts(
        aws_clients.dynamodb,
        "TransactWriteItems",
        lambda: ConnectionClosedError(endpoint_url="http://injected.invalid"),
        times=1,
    )

    response = post_json(client, _upload_body())

    assert response.status_code == 201, response.body
    tokens = [json.loads(request.body)["ClientRequestToken"] for request in attempts.calls]
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]  # a retry of a transaction that did commit is a no-op
    _assert_complete(client, service, written, response.json_body)


def test_connection_errors_that_outlast_the_retries_are_a_503_and_save_nothing(
    client: Client, aws_clients: AwsClients
):
    attempts = fail_attempts(
        aws_clients.s3,
        "PutObject",
        lambda: ConnectionClosedError(endpoint_url="http://injected.invalid"),
    )

    response = post_json(client, _upload_body())

    assert len(attempts.calls) == AWS_MAX_ATTEMPTS
    assert response.status_code == 503
    assert response.json_body["Message"] == f"{S3_PUT} (ConnectionClosedError); {NOT_SAVED}"
    _assert_nothing()


@pytest.mark.parametrize(
    ("path", "operation", "step"),
    [
        ("/images", "Query", "listing images"),
        ("/images?user_id=alice", "Query", "listing images"),
        ("/images/{id}", "GetItem", "reading the image"),
        ("/images/{id}/download", "GetItem", "reading the image"),
    ],
)
def test_reads_that_dynamodb_fails_are_a_503_naming_the_step(
    client: Client, aws_clients: AwsClients, path: str, operation: str, step: str
):
    record = post_json(client, _upload_body()).json_body
    Fault("dynamodb", operation, "ProvisionedThroughputExceededException").apply(aws_clients)

    response = client.http.get(path.format(id=record["image_id"]))

    assert response.status_code == 503
    assert response.json_body == {
        "Code": "ServiceUnavailableError",
        "Message": f"dynamodb: {step} failed (ProvisionedThroughputExceededException, "
        "throttled); nothing was changed; retry",
    }


# --- reconcile --------------------------------------------------------------------------


def test_reconcile_finds_each_kind_of_orphan_and_fix_removes_exactly_them(
    client: Client, aws_clients: AwsClients, written: WrittenKeys, service: ImageService
):
    s3, dynamodb = aws_clients.s3, aws_clients.dynamodb
    kept = upload(client, tags=["a", "b"])
    no_object = upload(client, tags=["a"])
    no_image = upload(client, tags=["b", "c"])
    s3.delete_object(Bucket=BUCKET, Key=no_object["s3_key"])
    dynamodb.delete_item(
        TableName=TABLE, Key={"pk": {"S": f"IMAGE#{no_image['image_id']}"}, "sk": {"S": "META"}}
    )
    stray_key = f"images/{uuid.uuid4()}.png"
    s3.put_object(Bucket=BUCKET, Key=stray_key, Body=image_bytes())
    stray_id = str(uuid.uuid4())
    stray_membership = {"pk": "TAG#z", "sk": f"2026-01-01T00:00:00.000Z#{stray_id}"}
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            name: {"S": value} for name, value in {**stray_membership, "image_id": stray_id}.items()
        },
    )
    memberships = sorted(
        [
            {**dict(zip(("pk", "sk"), key, strict=True)), "image_id": no_image["image_id"]}
            for key in written.of(no_image["image_id"])
            if key[0].startswith("TAG#")
        ]
        + [{**stray_membership, "image_id": stray_id}],
        key=lambda membership: (membership["pk"], membership["sk"]),
    )
    expected = ReconcileReport(
        orphan_objects=sorted([stray_key, no_image["s3_key"]]),
        orphan_records=[no_object["image_id"]],
        orphan_memberships=memberships,
    )
    before = _state()

    dry_run = reconcile(service, now=_later())
    unchanged = _state()
    fixed = reconcile(service, fix=True, now=_later())
    after = _state()

    assert dry_run == expected
    assert len(memberships) == 4  # TAG#b, TAG#c, TAG#b+c of the lost image; the stray one
    assert unchanged == before
    assert fixed == replace(expected, fixed=True)
    assert set(after.items) == {kept["image_id"]}
    assert list(after.objects) == [kept["s3_key"]]
    assert after.other_items == before.other_items  # feed-month markers are not memberships
    _assert_complete(client, service, written, kept)
    assert client.http.get("/images?tag=b").json_body["items"][0]["image_id"] == kept["image_id"]
    assert reconcile(service, fix=True, now=_later()).clean


def test_objects_younger_than_the_grace_period_are_not_orphans(
    client: Client, aws_clients: AwsClients, service: ImageService
):
    aws_clients.s3.put_object(Bucket=BUCKET, Key="images/in-flight.png", Body=b"x")

    assert reconcile(service).clean
    assert reconcile(service, grace=timedelta(0)).orphan_objects == ["images/in-flight.png"]
    assert reconcile(service, now=_later()).orphan_objects == ["images/in-flight.png"]


def test_a_membership_of_a_live_image_is_never_deleted_as_an_orphan(
    client: Client, aws_clients: AwsClients, service: ImageService
):
    record = upload(client, tags=["a"])
    membership = {
        "pk": "TAG#a",
        "sk": f"{record['created_at']}#{record['image_id']}",
        "image_id": record["image_id"],
    }

    assert service.metadata.delete_orphan_membership(membership) is False
    assert client.http.get("/images?tag=a").json_body["count"] == 1


def test_delete_transaction_checks_the_owner_in_dynamodb(
    client: Client, aws_clients: AwsClients, service: ImageService
):
    record = service.get_image(upload(client, tags=["a"])["image_id"])

    with pytest.raises(NotOwnerError):
        service.metadata.delete_image(record, owner="mallory")

    assert set(_state().items) == {record.image_id}


def test_a_decoder_crash_after_the_put_leaves_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch
):
    def crash(data: bytes, field_name: str = "file") -> None:
        raise ZeroDivisionError("a bug in the decoder")

    monkeypatch.setattr("chalicelib.service.check_decodes", crash)

    response = post_json(client, _upload_body())

    assert response.status_code == 500
    _assert_nothing()
