"""Consistency under faults, and the sweep over what they leave.

Every upload and delete ends with a complete image or nothing (or, where the design
accepts it, invisible objects that the sweep leaves alone for its grace period and then
removes), and answers with an accurate status and message: the rules of
``chalicelib/ingest.py``. An error answer from DynamoDB means not saved (the objects
are deleted); a lost answer is re-driven, then read back, and else answered as unknown
("may have been saved as {id}") with the objects kept; any S3 put failure deletes every
object of the image (original and renditions) and is "not saved".

Faults are injected into the service's own boto3 clients through botocore's event hooks
(``tests/invariants.py``, ``tests/faults.py``) at every step: S3 PutObject (each
object), the feed-month PutItem, the metadata TransactWriteItems (each attempt, inside
the retry loop too), the compensating S3 DeleteObject, the delete's GetItem,
TransactWriteItems and S3 DeleteObject; as error answers, throttling, and answers lost
before or after the call took effect. Issue 9's interleavings are replayed exactly: a
transaction that commits after the service's read timeout (applied by the test before
the re-drive, before the consistent read, or after the answer), a put whose answer is
lost, a lost attempt hidden behind a later error answer.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from chalice.test import Client

from chalicelib import ingest
from chalicelib.errors import NotOwnerError
from chalicelib.keys import membership_partitions
from chalicelib.service import (
    AWS_CONNECT_TIMEOUT_SECONDS,
    AWS_MAX_ATTEMPTS,
    AWS_READ_TIMEOUT_SECONDS,
    AwsClients,
    ImageService,
)
from chalicelib.sweep import Sweep, SweepReport
from tests.faults import (
    CapturedCalls,
    at_call,
    drained,
    inject_on_key,
    lost,
    script_attempts,
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
    image_bytes,
    post_json,
    upload,
)

Outcome = Literal["complete", "nothing", "orphan objects"]

#: The sweep's grace period in these tests; :func:`_later` is past it for every object.
GRACE = timedelta(hours=1)


@pytest.fixture
def written(aws_clients: AwsClients) -> WrittenKeys:
    return WrittenKeys(aws_clients.dynamodb)


@pytest.fixture(autouse=True)
def uploader(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadPoolExecutor]:
    """The ingest's S3 writer pool, this test's own, drained before the state is read
    (a crashed ingest may leave puts in flight)."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-store")
    monkeypatch.setattr(ingest, "_uploader", pool)
    yield pool
    pool.shutdown(wait=True)


def _later() -> datetime:
    """A time past the sweep's grace period for every object written by the test."""
    return datetime.now(UTC) + 2 * GRACE


def sweep(service: ImageService, *, fix: bool = False, now: datetime | None = None) -> SweepReport:
    """The whole sweep (as ``make reconcile`` runs it) at ``now`` (default: past the
    grace period of everything the test wrote)."""
    moment = now or _later()
    return Sweep(service, fix=fix, grace=GRACE, clock=lambda: moment).run(
        max_slices=None, resume=False
    )


def _state() -> Snapshot:
    """The bucket and table, read through fresh clients (no injected faults)."""
    return snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)


def object_keys(record: dict[str, Any]) -> set[str]:
    """Every S3 key the API's ``record`` names: the original and each rendition."""
    return {record["s3_key"], *(rendition["s3_key"] for rendition in record["renditions"])}


def without_urls(body: dict[str, Any]) -> dict[str, Any]:
    """A view's body without the presigned URLs it adds to each rendition."""
    return {
        **body,
        "renditions": [
            {name: value for name, value in rendition.items() if name != "url"}
            for rendition in body["renditions"]
        ],
    }


def _assert_complete(
    client: Client, service: ImageService, written: WrittenKeys, record: dict[str, Any]
) -> None:
    """GET works; the image item, the items its upload wrote, its original with the
    right bytes and every rendition are there, and nothing else; the sweep finds nothing."""
    state = _state()
    assert complete_problems(state, record, written.of(record["image_id"])) == []
    assert set(state.objects) == object_keys(record)
    view = client.http.get(f"/images/{record['image_id']}")
    assert view.status_code == 200
    assert without_urls({name: view.json_body[name] for name in record}) == record
    assert sweep(service).clean


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


def _is_original(key: str) -> bool:
    return key.startswith("images/")


def _is_rendition(key: str) -> bool:
    return key.startswith("renditions/")


# --- fault injection: the cases ---------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure (see :func:`tests.invariants.inject`).

    ``error`` is an AWS error code (an error answer; ``cancellation`` gives a
    ``TransactionCanceledException``'s per-item reasons) or a botocore exception class
    (no answer). ``times`` limits how many calls fail (after ``skip``); ``key_prefix``
    aims an S3 fault at the keys with that prefix only (``images/``: the original,
    ``renditions/``), whatever order the concurrent puts run in.
    """

    service: Literal["s3", "dynamodb"]
    operation: str
    error: str | type[Exception]
    after_call: bool = False
    skip: int = 0
    times: int | None = None
    cancellation: tuple[str, ...] = ()
    key_prefix: str | None = None

    def apply(self, clients: AwsClients) -> Injection:
        client = clients.s3 if self.service == "s3" else clients.dynamodb

        def build() -> Exception:
            if isinstance(self.error, str):
                extra: dict[str, Any] = {}
                if self.cancellation:
                    extra["CancellationReasons"] = [{"Code": code} for code in self.cancellation]
                return client_error(client, self.error, self.operation, **extra)
            no_answer: Any = self.error
            exception: Exception = no_answer(endpoint_url="http://injected.invalid")
            return exception

        if self.key_prefix is not None:
            prefix = self.key_prefix
            return inject_on_key(
                client,
                self.operation,
                lambda key: key.startswith(prefix),
                build,
                after_call=self.after_call,
            )
        return inject(
            client,
            self.operation,
            build,
            after_call=self.after_call,
            skip=self.skip,
            times=self.times,
        )


@dataclass(frozen=True)
class Case:
    """Faults, then what the client must be told and what must be left."""

    faults: tuple[Fault, ...]
    status: int
    message: str | None  # None: a success; ``{id}`` stands for the image id
    outcome: Outcome


NOT_SAVED = "the image was not saved; retry"
MAY_BE_SAVED = (
    "the image may have been saved as {id}: GET /images/{id} tells; "
    "it becomes complete or is removed on its own"
)
S3_PUT = "s3: storing the image failed"
DDB_PUT = "dynamodb: saving the image's metadata failed"
THROTTLED_CANCEL = ("ThrottlingError", "None", "None", "None")
CONDITION_FAILED = ("ConditionalCheckFailed", "None", "None", "None")
CODES = {409: "ConflictError", 404: "NotFoundError", 503: "ServiceUnavailableError"}
TWI = "TransactWriteItems"

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
    "s3 put of the original fails, the rendition's lands": Case(
        (Fault("s3", "PutObject", "InternalError", key_prefix="images/"),),
        503,
        f"{S3_PUT} (InternalError); {NOT_SAVED}",
        "nothing",
    ),
    "s3 put of the rendition fails, the original's lands": Case(
        (Fault("s3", "PutObject", "InternalError", key_prefix="renditions/"),),
        503,
        f"{S3_PUT} (InternalError); {NOT_SAVED}",
        "nothing",
    ),
    # Issue 9: a put whose answer is lost may have landed; it must not stay behind.
    "s3 put answer lost": Case(
        (Fault("s3", "PutObject", ReadTimeoutError, after_call=True),),
        503,
        f"{S3_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "nothing",
    ),
    "s3 put answer lost for the original only": Case(
        (Fault("s3", "PutObject", ReadTimeoutError, after_call=True, key_prefix="images/"),),
        503,
        f"{S3_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "nothing",
    ),
    "s3 put answer lost for the rendition only": Case(
        (Fault("s3", "PutObject", ReadTimeoutError, after_call=True, key_prefix="renditions/"),),
        503,
        f"{S3_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "nothing",
    ),
    "s3 put answer lost, undo fails too": Case(
        (
            Fault("s3", "PutObject", ReadTimeoutError, after_call=True),
            Fault("s3", "DeleteObject", "InternalError"),
        ),
        503,
        f"{S3_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "orphan objects",
    ),
    "month marker put error": Case(
        (Fault("dynamodb", "PutItem", "InternalServerError"),),
        503,
        f"{DDB_PUT} (InternalServerError); {NOT_SAVED}",
        "nothing",
    ),
    # The marker is not the image: its lost answer leaves the transaction unsent.
    "month marker put unanswered": Case(
        (Fault("dynamodb", "PutItem", ReadTimeoutError, after_call=True),),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {NOT_SAVED}",
        "nothing",
    ),
    # DynamoDB's 500: "the request may or may not have succeeded": never undone.
    "transaction error": Case(
        (Fault("dynamodb", TWI, "InternalServerError"),),
        503,
        f"{DDB_PUT} (InternalServerError); {MAY_BE_SAVED}",
        "orphan objects",
    ),
    "transaction error once: the re-drive commits": Case(
        (Fault("dynamodb", TWI, "InternalServerError", times=1),),
        201,
        None,
        "complete",
    ),
    "transaction answered with a validation error: not saved": Case(
        (Fault("dynamodb", TWI, "ValidationException"),),
        503,
        f"{DDB_PUT} (ValidationException); {NOT_SAVED}",
        "nothing",
    ),
    "transaction throttled": Case(
        (Fault("dynamodb", TWI, "ProvisionedThroughputExceededException"),),
        503,
        f"{DDB_PUT} (ProvisionedThroughputExceededException, throttled); {NOT_SAVED}",
        "nothing",
    ),
    "transaction cancelled by throttling": Case(
        (
            Fault(
                "dynamodb",
                TWI,
                "TransactionCanceledException",
                cancellation=THROTTLED_CANCEL,
            ),
        ),
        503,
        f"{DDB_PUT} (TransactionCanceledException, throttled); {NOT_SAVED}",
        "nothing",
    ),
    "transaction throttled, undo fails too": Case(
        (
            Fault("dynamodb", TWI, "ProvisionedThroughputExceededException"),
            Fault("s3", "DeleteObject", "InternalError"),
        ),
        503,
        f"{DDB_PUT} (ProvisionedThroughputExceededException, throttled); {NOT_SAVED}",
        "orphan objects",
    ),
    "transaction unanswered once, not applied: the re-drive commits": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError, times=1),),
        201,
        None,
        "complete",
    ),
    "transaction unanswered every time, not applied": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError),),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {MAY_BE_SAVED}",
        "orphan objects",
    ),
    "transaction unanswered, applied": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError, after_call=True),),
        201,
        None,
        "complete",
    ),
    "transaction unanswered once, applied": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError, after_call=True, times=1),),
        201,
        None,
        "complete",
    ),
    "transaction unanswered, the re-drive answered with an error": Case(
        (
            # (The first hook raises on call 1: the second sees the re-drive first.)
            Fault("dynamodb", TWI, ReadTimeoutError, times=1),
            Fault("dynamodb", TWI, "InternalServerError"),
        ),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {MAY_BE_SAVED}",
        "orphan objects",
    ),
    "transaction unanswered, applied, the re-drive answered with an error": Case(
        (
            Fault("dynamodb", TWI, ReadTimeoutError, after_call=True, times=1),
            Fault("dynamodb", TWI, "InternalServerError", skip=1),
        ),
        201,
        None,
        "complete",
    ),
    "transaction retried after it committed": Case(
        (
            Fault(
                "dynamodb",
                TWI,
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
                TWI,
                "TransactionCanceledException",
                cancellation=CONDITION_FAILED,
            ),
        ),
        409,
        "image_id: {id} was deleted meanwhile",
        "nothing",
    ),
    "transaction unanswered, check fails": Case(
        (
            Fault("dynamodb", TWI, ReadTimeoutError),
            Fault("dynamodb", "GetItem", ReadTimeoutError),
        ),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {MAY_BE_SAVED}",
        "orphan objects",
    ),
    "transaction unanswered, applied, check fails": Case(
        (
            Fault("dynamodb", TWI, ReadTimeoutError, after_call=True),
            Fault("dynamodb", "GetItem", ReadTimeoutError),
        ),
        503,
        f"{DDB_PUT} (ReadTimeoutError); {MAY_BE_SAVED}",
        "complete",
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
        (Fault("dynamodb", TWI, "InternalServerError"),),
        503,
        f"{DDB_DELETE} (InternalServerError); {NOT_DELETED}",
        "complete",
    ),
    "transaction cancelled by throttling": Case(
        (
            Fault(
                "dynamodb",
                TWI,
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
                TWI,
                "TransactionCanceledException",
                cancellation=("TransactionConflict", "None", "None", "None"),
            ),
        ),
        409,
        "image_id: another request changed this image at the same moment; retry",
        "complete",
    ),
    "transaction unanswered, not applied": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError),),
        503,
        f"{DDB_DELETE} (ReadTimeoutError); {NOT_DELETED}",
        "complete",
    ),
    "transaction unanswered, applied": Case(
        (Fault("dynamodb", TWI, ReadTimeoutError, after_call=True),),
        200,
        None,
        "nothing",
    ),
    "transaction retried after it committed": Case(
        (
            Fault(
                "dynamodb",
                TWI,
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
            Fault("dynamodb", TWI, ReadTimeoutError),
            Fault("dynamodb", "GetItem", ReadTimeoutError, skip=1),
        ),
        503,
        f"{DDB_DELETE} (ReadTimeoutError); the image may have been deleted: "
        "retry (404 means it was)",
        "complete",
    ),
    "s3 delete error": Case(
        (Fault("s3", "DeleteObject", "InternalError"),), 200, None, "orphan objects"
    ),
    "s3 delete throttled": Case(
        (Fault("s3", "DeleteObject", "SlowDown"),), 200, None, "orphan objects"
    ),
}


def _assert_orphan_objects_then_swept(service: ImageService, keys: set[str]) -> None:
    """Only the objects ``keys`` are left: invisible, untouched within the grace period,
    reported after it, and removed by a fixing sweep; a second sweep is clean."""
    state = _state()
    assert state.items == {}
    assert set(state.objects) == keys
    assert sweep(service, fix=True, now=datetime.now(UTC)).clean
    assert set(_state().objects) == keys
    assert sweep(service) == SweepReport(orphan_objects=sorted(keys), done=True)
    assert sweep(service, fix=True).orphan_objects == sorted(keys)
    _assert_nothing()
    assert sweep(service, fix=True).clean


def _record_of(client: Client, image_id: str) -> dict[str, Any]:
    """The record ``GET /images/{image_id}`` shows, as ``POST /images`` returns it."""
    view = client.http.get(f"/images/{image_id}?metadata_only=true")
    assert view.status_code == 200, view.body
    body: dict[str, Any] = view.json_body
    return body


@pytest.mark.parametrize("case", UPLOAD_CASES.values(), ids=UPLOAD_CASES.keys())
def test_upload_fault_leaves_a_complete_image_or_nothing(
    case: Case,
    client: Client,
    aws_clients: AwsClients,
    written: WrittenKeys,
    service: ImageService,
    uploader: ThreadPoolExecutor,
) -> None:
    keys = CapturedCalls(aws_clients.s3, "PutObject")
    injections = [fault.apply(aws_clients) for fault in case.faults]

    response = post_json(client, _upload_body())
    drained(uploader)
    for injection in injections:
        injection.remove()  # the sweep below uses the same clients

    assert response.status_code == case.status, response.body
    image_ids: list[str | None] = [*written.image_ids()] or [None]
    if case.message is not None:
        assert response.json_body == {
            "Code": CODES[case.status],
            "Message": case.message.format(id=image_ids[0]),
        }
    stored = {params["Key"] for params in keys.params}
    assert len(stored) == 2  # the original and its one rendition (the image is 32 px)
    if case.outcome == "complete":
        record = response.json_body if case.status == 201 else _record_of(client, str(image_ids[0]))
        _assert_complete(client, service, written, record)
    elif case.outcome == "nothing":
        _assert_nothing()
        assert sweep(service).clean
    else:
        if image_ids[0] is not None:
            assert client.http.get(f"/images/{image_ids[0]}").status_code == 404
        _assert_orphan_objects_then_swept(service, stored)


@pytest.mark.parametrize("case", DELETE_CASES.values(), ids=DELETE_CASES.keys())
def test_delete_fault_leaves_a_complete_image_or_nothing(
    case: Case,
    client: Client,
    aws_clients: AwsClients,
    written: WrittenKeys,
    service: ImageService,
) -> None:
    record = upload(client, tags=["a", "b"])
    injections = [fault.apply(aws_clients) for fault in case.faults]

    response = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "alice"})
    for injection in injections:
        injection.remove()  # the sweep below uses the same clients

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
        assert sweep(service).clean
    else:
        _assert_orphan_objects_then_swept(service, object_keys(record))


# --- issue 9: a transaction that commits after the read timeout -------------------------

Moment = Literal["before the re-drive", "before the consistent read", "after the answer"]


@pytest.mark.parametrize(
    "moment", ["before the re-drive", "before the consistent read", "after the answer"]
)
def test_a_transaction_that_commits_after_the_read_timeout_is_never_answered_not_saved(
    moment: Moment,
    client: Client,
    aws_clients: AwsClients,
    written: WrittenKeys,
    service: ImageService,
) -> None:
    """The first TransactWriteItems loses its answer without being applied; DynamoDB
    applies it later, at ``moment``. Whatever the moment, the answer is true, no byte of
    the image is deleted, and the image ends complete."""
    dynamodb = aws_clients.dynamodb
    transactions = CapturedCalls(dynamodb, TWI)
    # Lost answers: the first call; with a later commit, the re-drive too.
    inject(dynamodb, TWI, lost, times=1 if moment == "before the re-drive" else 2)
    if moment == "before the re-drive":
        at_call(dynamodb, TWI, 1, lambda: transactions.apply(0))
    elif moment == "before the consistent read":
        at_call(dynamodb, "GetItem", 0, lambda: transactions.apply(0))

    response = post_json(client, _upload_body())

    (image_id,) = written.image_ids()
    if moment == "after the answer":
        assert response.status_code == 503, response.body
        assert response.json_body["Message"] == (
            f"{DDB_PUT} (ReadTimeoutError); {MAY_BE_SAVED.format(id=image_id)}"
        )
        assert client.http.get(f"/images/{image_id}").status_code == 404
        kept = set(_state().objects)
        assert len(kept) == 2  # the bytes stay: the transaction may still commit
        transactions.apply(0)
        record = _record_of(client, image_id)
        assert object_keys(record) == kept
    else:
        assert response.status_code == 201, response.body
        record = response.json_body
        assert record["image_id"] == image_id
    _assert_complete(client, service, written, record)
    assert sweep(service, fix=True).clean


def test_a_transaction_that_never_commits_is_answered_unknown_and_swept(
    client: Client, aws_clients: AwsClients, written: WrittenKeys, service: ImageService
) -> None:
    """Both attempts lose their answer, the read finds nothing: the answer says the
    outcome is unknown and names the id; the objects stay until the grace period ends,
    then the sweep removes them and nothing is left."""
    keys = CapturedCalls(aws_clients.s3, "PutObject")
    inject(aws_clients.dynamodb, TWI, lost, times=2)

    response = post_json(client, _upload_body())

    (image_id,) = written.image_ids()
    assert response.status_code == 503
    assert MAY_BE_SAVED.format(id=image_id) in response.json_body["Message"]
    _assert_orphan_objects_then_swept(service, {params["Key"] for params in keys.params})


# --- issue 9: a lost attempt hidden behind a later error answer (botocore's retries) -----

THROTTLED = "ProvisionedThroughputExceededException"


def _throttled(dynamodb: Any) -> Any:
    return lambda: client_error(dynamodb, THROTTLED, TWI)


@pytest.mark.parametrize(
    ("attempts", "status", "outcome"),
    [
        # Attempt 1 lost (not applied), the retry answered throttled: the re-drive commits.
        (["lost", "throttled"], 201, "complete"),
        # Attempt 1 lost but applied, the retry throttled: the re-drive finds it committed.
        (["applied, lost", "throttled"], 201, "complete"),
        # Attempt 1 lost, then error answers only (the re-drive too): unknown, never
        # "not saved" (the first attempt may still commit).
        (["lost", "throttled", "throttled"], 503, "orphan objects"),
        # Attempt 1 lost but applied, then error answers only: the consistent read finds it.
        (["applied, lost", "throttled", "throttled"], 201, "complete"),
    ],
    ids=["lost-throttled", "applied-throttled", "lost-errors-only", "applied-errors-only"],
)
def test_a_lost_attempt_behind_an_error_answer_is_not_answered_not_saved(
    attempts: list[str],
    status: int,
    outcome: Outcome,
    client: Client,
    aws_clients: AwsClients,
    written: WrittenKeys,
    service: ImageService,
) -> None:
    dynamodb = aws_clients.dynamodb
    keys = CapturedCalls(aws_clients.s3, "PutObject")
    script = [_throttled(dynamodb) if step == "throttled" else step for step in attempts]
    injection = script_attempts(dynamodb, TWI, script)

    response = post_json(client, _upload_body())
    injection.remove()

    assert response.status_code == status, response.body
    (image_id,) = written.image_ids()
    if outcome == "complete":
        _assert_complete(client, service, written, response.json_body)
        return
    # Never "not saved": the first attempt may still commit.
    assert response.json_body["Message"] == (
        f"{DDB_PUT} ({THROTTLED}, throttled); {MAY_BE_SAVED.format(id=image_id)}"
    )
    _assert_orphan_objects_then_swept(service, {params["Key"] for params in keys.params})


def test_error_answers_only_inside_the_retry_loop_are_not_saved(
    client: Client, aws_clients: AwsClients, written: WrittenKeys
) -> None:
    """Without a lost attempt, error answers prove nothing was applied: not saved."""
    dynamodb = aws_clients.dynamodb
    script_attempts(dynamodb, TWI, [_throttled(dynamodb)])

    response = post_json(client, _upload_body())

    assert response.status_code == 503
    assert response.json_body["Message"] == f"{DDB_PUT} ({THROTTLED}, throttled); {NOT_SAVED}"
    _assert_nothing()


# --- retries and timeouts ---------------------------------------------------------------


def test_clients_use_standard_retries_and_explicit_timeouts(aws: None) -> None:
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
) -> None:
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
) -> None:
    attempts = fail_attempts(
        aws_clients.s3,
        "PutObject",
        lambda: ConnectionClosedError(endpoint_url="http://injected.invalid"),
    )

    response = post_json(client, _upload_body())

    assert len(attempts.calls) == 2 * AWS_MAX_ATTEMPTS  # the original and its rendition
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
) -> None:
    record = post_json(client, _upload_body()).json_body
    Fault("dynamodb", operation, "ProvisionedThroughputExceededException").apply(aws_clients)

    response = client.http.get(path.format(id=record["image_id"]))

    assert response.status_code == 503
    assert response.json_body == {
        "Code": "ServiceUnavailableError",
        "Message": f"dynamodb: {step} failed (ProvisionedThroughputExceededException, "
        "throttled); nothing was changed; retry",
    }


# --- the sweep over what faults leave ----------------------------------------------------


def test_the_sweep_finds_each_kind_of_orphan_and_fix_removes_exactly_them(
    client: Client, aws_clients: AwsClients, written: WrittenKeys, service: ImageService
) -> None:
    s3, dynamodb = aws_clients.s3, aws_clients.dynamodb
    kept = upload(client, tags=["a", "b"])
    no_object = upload(client, tags=["a"])
    no_image = upload(client, tags=["b", "c"])
    s3.delete_object(Bucket=BUCKET, Key=no_object["s3_key"])
    dynamodb.delete_item(
        TableName=TABLE, Key={"pk": {"S": f"IMAGE#{no_image['image_id']}"}, "sk": {"S": "META"}}
    )
    stray_key = f"images/{uuid.uuid4()}/0123456789abcdef.png"
    s3.put_object(Bucket=BUCKET, Key=stray_key, Body=image_bytes())
    stray_id = str(uuid.uuid4())
    stray_membership = {"pk": "TAG#z", "sk": f"2026-01-01T00:00:00.000Z#{stray_id}"}
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            name: {"S": value} for name, value in {**stray_membership, "image_id": stray_id}.items()
        },
    )
    memberships = [
        {**dict(zip(("pk", "sk"), key, strict=True)), "image_id": no_image["image_id"]}
        for key in written.of(no_image["image_id"])
        if key[0].startswith("TAG#")
    ] + [{**stray_membership, "image_id": stray_id}]
    before = _state()

    dry_run = sweep(service)
    unchanged = _state()
    fixed = sweep(service, fix=True)
    after = _state()

    def by_key(membership: dict[str, str]) -> tuple[str, str]:
        return membership["pk"], membership["sk"]

    assert len(memberships) == 4  # TAG#b, TAG#c, TAG#b+c of the lost image; the stray one
    for report, fix in ((dry_run, False), (fixed, True)):
        assert report.fixed is fix
        assert report.done
        assert sorted(report.orphan_objects) == sorted([stray_key, *object_keys(no_image)])
        # The record without its original: its renditions go with it.
        assert report.orphan_records == [no_object["image_id"]]
        assert sorted(report.orphan_memberships, key=by_key) == sorted(memberships, key=by_key)
        assert replace(
            report, orphan_objects=[], orphan_records=[], orphan_memberships=[]
        ) == SweepReport(fixed=fix, done=True)
    assert unchanged == before
    assert set(after.items) == {kept["image_id"]}
    assert set(after.objects) == object_keys(kept)
    assert after.other_items == before.other_items  # feed-month markers are not memberships
    _assert_complete(client, service, written, kept)
    assert client.http.get("/images?tag=b").json_body["items"][0]["image_id"] == kept["image_id"]
    assert sweep(service, fix=True).clean


def test_objects_younger_than_the_grace_period_are_not_orphans(
    client: Client, aws_clients: AwsClients, service: ImageService
) -> None:
    key = f"images/{uuid.uuid4()}/0123456789abcdef.png"
    aws_clients.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    assert sweep(service, fix=True, now=datetime.now(UTC)).clean
    assert Sweep(service, fix=False, grace=timedelta(0)).run(None, resume=False).orphan_objects == [
        key
    ]
    assert sweep(service).orphan_objects == [key]


def test_a_membership_of_a_live_image_is_never_deleted_as_an_orphan(
    client: Client, aws_clients: AwsClients, service: ImageService
) -> None:
    record = upload(client, tags=["a"])
    [partition] = membership_partitions(record["image_id"], ["a"], service.metadata.layout)
    membership = {
        "pk": partition,
        "sk": f"{record['created_at']}#{record['image_id']}",
        "image_id": record["image_id"],
    }

    assert service.metadata.delete_orphan_membership(membership) is False
    assert client.http.get("/images?tag=a").json_body["count"] == 1


def test_delete_transaction_checks_the_owner_in_dynamodb(
    client: Client, aws_clients: AwsClients, service: ImageService
) -> None:
    record = service.get_image(upload(client, tags=["a"])["image_id"])

    with pytest.raises(NotOwnerError):
        service.metadata.delete_image(record, owner="mallory")

    assert set(_state().items) == {record.image_id}


def test_a_crash_after_processing_leaves_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise ZeroDivisionError("a bug between processing and storing")

    monkeypatch.setattr("chalicelib.ingest.Ingest._plan", crash)

    response = post_json(client, _upload_body())

    assert response.status_code == 500
    _assert_nothing()
