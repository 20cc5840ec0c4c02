"""Each upload is processed once: the processing lease on the upload item (issue 17).

``complete``, the S3 event and the sweep claim the work with a conditional UpdateItem
before decoding (``DirectUploads.finish``). Proven here by counting decodes (calls of
``imaging.process``), never by time: the clock is moved by hand and ``complete``'s wait
runs through the test's ``sleep`` (conftest's :class:`~tests.unit.conftest.Sleeps`),
which never sleeps.

A crash is :class:`ProcessDied`, a ``BaseException``: like a Lambda killed at its
timeout, no handler of the service runs, so the lease is left behind and must expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib import imaging, ingest
from chalicelib.config import Settings
from chalicelib.service import AWS_MAX_ATTEMPTS, AwsClients, ImageService
from chalicelib.sweep import Sweep
from chalicelib.uploads import COMPLETE_WAIT_SECONDS, WAIT_DELAYS
from tests.faults import drained, script_attempts
from tests.invariants import client_error, inject
from tests.unit.conftest import BUCKET, SETTINGS, TABLE, Sleeps
from tests.unit.uploading import MovingClock, complete, post_bytes, s3_event, start_upload, status

GRACE = timedelta(hours=1)
LEASE = timedelta(seconds=SETTINGS.upload_lease_seconds)
LEASE_SETTINGS = replace(
    SETTINGS, upload_expires_seconds=4 * 3600, sweep_grace_seconds=int(GRACE.total_seconds())
)


class ProcessDied(BaseException):
    """The process running an ingest is gone (killed at its timeout, out of memory):
    no ``except Exception`` of the service runs, nothing is given back."""


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def settings() -> Settings:
    """Overrides conftest's: uploads that outlive the grace period (for the sweep)."""
    return LEASE_SETTINGS


@pytest.fixture(autouse=True)
def uploader(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadPoolExecutor]:
    """The ingest's S3 writer pool, this test's own, drained before the state is read."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-store")
    monkeypatch.setattr(ingest, "_uploader", pool)
    yield pool
    pool.shutdown(wait=True)


class Decodes:
    """Counts ``imaging.process`` calls; ``die_at`` makes call number ``die_at``
    (0-based) kill its process instead (:class:`ProcessDied`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.die_at: int | None = None
        original = imaging.process

        def counted(*args: Any, **kwargs: Any) -> Any:
            number, self.count = self.count, self.count + 1
            if number == self.die_at:
                raise ProcessDied
            return original(*args, **kwargs)

        monkeypatch.setattr(imaging, "process", counted)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    return Decodes(monkeypatch)


def upload_item(upload_id: str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"pk": {"S": f"UPLOAD#{upload_id}"}, "sk": {"S": "META"}}
    )["Item"]
    return item


def image_items() -> list[str]:
    scan = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return [item["pk"]["S"] for item in scan if item["pk"]["S"].startswith("IMAGE#")]


def objects() -> set[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"] for item in listing}


def assert_one_image(client: Client, started: dict[str, Any]) -> dict[str, Any]:
    """The upload is ready with one image whose objects are all that is stored, and
    its lease is gone with the work."""
    body = status(client, started["upload_id"])
    assert body["status"] == "ready", body
    record: dict[str, Any] = body["image"]
    assert image_items() == [f"IMAGE#{record['image_id']}"]
    assert objects() == {record["s3_key"], *(r["s3_key"] for r in record["renditions"])}
    item = upload_item(started["upload_id"])
    assert "lease_holder" not in item and "lease_expires" not in item
    return record


def die_while_holding(client: Client, started: dict[str, Any], decodes: Decodes) -> None:
    """An S3 event whose process dies in the middle of decoding: it holds the lease."""
    decodes.die_at = decodes.count
    with pytest.raises(ProcessDied):
        s3_event(client, started["upload"]["fields"]["key"])
    item = upload_item(started["upload_id"])
    assert item["status"]["S"] == "pending"
    assert "lease_holder" in item


# --- the second arrival does not decode ------------------------------------------------


def test_complete_then_the_event_decode_once(client: Client, decodes: Decodes) -> None:
    started = start_upload(client)
    post_bytes(started)
    answer = complete(client, started["upload_id"])
    s3_event(client, started["upload"]["fields"]["key"])
    assert answer.status_code == 201
    assert decodes.count == 1
    assert assert_one_image(client, started) == answer.json_body


def test_duplicate_events_decode_once(client: Client, decodes: Decodes) -> None:
    started = start_upload(client)
    post_bytes(started)
    for _ in range(3):
        s3_event(client, started["upload"]["fields"]["key"])
    assert decodes.count == 1
    assert_one_image(client, started)


def test_events_arriving_while_another_holds_the_lease_return_without_decoding(
    client: Client, decodes: Decodes
) -> None:
    started = start_upload(client)
    post_bytes(started)
    die_while_holding(client, started, decodes)
    for _ in range(2):  # S3's duplicates, within the lease: the invocation is done
        s3_event(client, started["upload"]["fields"]["key"])
    assert decodes.count == 1
    assert status(client, started["upload_id"])["status"] == "pending"
    assert image_items() == []


# --- complete's bounded wait -----------------------------------------------------------


def test_complete_waits_for_the_holder_and_answers_its_record(
    client: Client, service: ImageService, decodes: Decodes, sleep: Sleeps
) -> None:
    """While ``complete`` waits, the holder (here: the same work, run by the test at the
    first pause) commits: ``complete`` answers 200 with that record, no decode of its
    own."""
    started = start_upload(client)
    post_bytes(started)
    holder = service.metadata
    assert holder.take_upload_lease(started["upload_id"], "holder", 0, 2**40)
    finished: list[Any] = []

    def the_holder_finishes() -> None:
        if not finished:
            holder.release_upload_lease(started["upload_id"], "holder")
            upload = service.metadata.get_upload(started["upload_id"])
            assert upload is not None
            finished.append(service.uploads.finish(upload))

    sleep.then = the_holder_finishes
    answer = complete(client, started["upload_id"])

    assert answer.status_code == 200, answer.body
    assert answer.json_body == finished[0].record.to_dict()
    assert sleep.pauses == [WAIT_DELAYS[0]]
    assert decodes.count == 1
    assert_one_image(client, started)


def test_complete_answers_202_with_the_upload_status_when_the_wait_runs_out(
    client: Client, decodes: Decodes, sleep: Sleeps
) -> None:
    started = start_upload(client)
    post_bytes(started)
    die_while_holding(client, started, decodes)

    answer = complete(client, started["upload_id"])

    assert answer.status_code == 202, answer.body
    assert answer.json_body == {
        "upload_id": started["upload_id"],
        "image_id": started["image_id"],
        "status": "pending",
        "expires_at": started["expires_at"],
    }
    assert answer.headers["Location"] == f"/uploads/{started['upload_id']}"
    assert int(answer.headers["Retry-After"]) > 0
    # Bounded before it runs, well inside API Gateway's 29 s: one poll per pause.
    assert sleep.pauses == list(WAIT_DELAYS)
    assert sum(sleep.pauses) == COMPLETE_WAIT_SECONDS < 29
    assert decodes.count == 1


# --- a crash while holding the lease ---------------------------------------------------


@pytest.mark.parametrize("by", ["complete", "event", "sweep"])
def test_a_crash_while_holding_the_lease_is_taken_over_after_it_expires(
    by: str,
    client: Client,
    service: ImageService,
    clock: MovingClock,
    decodes: Decodes,
    uploader: ThreadPoolExecutor,
) -> None:
    """The holder dies mid-decode; until its lease expires nobody decodes again; after
    that the next arrival (``complete``, the event redelivered, or the sweep) takes the
    work over: one image, two decodes in all (the dead one's and the taker's)."""
    started = start_upload(client)
    post_bytes(started)
    die_while_holding(client, started, decodes)

    clock.offset += LEASE + timedelta(seconds=1)
    answer = None
    if by == "complete":
        answer = complete(client, started["upload_id"])
    elif by == "event":
        s3_event(client, started["upload"]["fields"]["key"])
    else:
        clock.offset += 2 * GRACE
        Sweep(service, fix=True, grace=GRACE, clock=clock).run(max_slices=None, resume=False)
    drained(uploader)

    assert decodes.count == 2
    record = assert_one_image(client, started)
    if answer is not None:
        assert answer.status_code == 201
        assert answer.json_body == record


@pytest.mark.parametrize("step", ["store", "commit"])
def test_a_crash_after_storing_is_taken_over_with_the_same_objects(
    step: str,
    client: Client,
    service: ImageService,
    clock: MovingClock,
    decodes: Decodes,
    monkeypatch: pytest.MonkeyPatch,
    uploader: ThreadPoolExecutor,
) -> None:
    """The holder dies after its objects are stored (before the commit, or on the
    commit's way out): the taker stores the same keys and commits once."""
    started = start_upload(client)
    post_bytes(started)
    target = service.ingest if step == "store" else service.metadata
    name = "_store" if step == "store" else "put_image"
    original = getattr(target, name)

    def dies_after(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise ProcessDied

    monkeypatch.setattr(target, name, dies_after)
    with pytest.raises(ProcessDied):
        complete(client, started["upload_id"])
    drained(uploader)
    monkeypatch.setattr(target, name, original)

    if step == "commit":  # it committed before dying: the next arrival answers it
        answer = complete(client, started["upload_id"])
        assert answer.status_code == 200
    else:
        assert complete(client, started["upload_id"]).status_code == 202
        clock.offset += LEASE + timedelta(seconds=1)
        answer = complete(client, started["upload_id"])
        assert answer.status_code == 201
    assert decodes.count == (1 if step == "commit" else 2)
    assert answer.json_body == assert_one_image(client, started)


def test_the_sweep_leaves_a_live_lease_alone_and_takes_an_expired_one_over(
    client: Client,
    service: ImageService,
    clock: MovingClock,
    decodes: Decodes,
    uploader: ThreadPoolExecutor,
) -> None:
    started = start_upload(client)
    post_bytes(started)
    clock.offset = 2 * GRACE  # the object is past the grace period: an unfinished upload
    die_while_holding(client, started, decodes)

    def sweep() -> Any:
        report = Sweep(service, fix=True, grace=GRACE, clock=clock)
        return report.run(max_slices=None, resume=False)

    first = sweep()
    assert first.unfinished_uploads == [started["upload_id"]]
    assert decodes.count == 1
    assert started["upload"]["fields"]["key"] in objects()  # kept for the holder
    assert status(client, started["upload_id"])["status"] == "pending"

    clock.offset += LEASE + timedelta(seconds=1)
    sweep()
    drained(uploader)
    assert decodes.count == 2
    assert_one_image(client, started)


# --- failures of the lease write and of the holder -------------------------------------


@pytest.mark.parametrize("lost_attempts", [1, AWS_MAX_ATTEMPTS])
def test_a_lost_answer_on_the_lease_write_is_read_back_and_the_lease_is_ours(
    lost_attempts: int, client: Client, aws_clients: AwsClients, decodes: Decodes, sleep: Sleeps
) -> None:
    """The lease write lands but its answer is lost: on its only lost attempt
    (botocore's retry then finds the condition failing: the lease is held, by us) or on
    every attempt (the call raises). Either way the holder is read back, compared, and
    the work goes on here."""
    started = start_upload(client)
    post_bytes(started)
    # A retry of the landed write would be refused by its own condition: the later
    # attempts are lost on the way.
    attempts = ["applied, lost"] + ["lost"] * (lost_attempts - 1)
    injection = script_attempts(aws_clients.dynamodb, "UpdateItem", attempts)
    answer = complete(client, started["upload_id"])
    injection.remove()

    assert answer.status_code == 201, answer.body
    assert sleep.pauses == []
    assert decodes.count == 1
    assert answer.json_body == assert_one_image(client, started)


def test_a_lease_write_that_never_landed_is_a_503_and_a_retry_completes(
    client: Client, aws_clients: AwsClients, decodes: Decodes
) -> None:
    started = start_upload(client)
    post_bytes(started)
    injection = script_attempts(aws_clients.dynamodb, "UpdateItem", ["lost"] * AWS_MAX_ATTEMPTS)
    answer = complete(client, started["upload_id"])
    injection.remove()
    assert answer.status_code == 503, answer.body
    assert "still pending" in answer.json_body["Message"]
    assert decodes.count == 0

    retry = complete(client, started["upload_id"])
    assert retry.status_code == 201, retry.body
    assert decodes.count == 1


def test_a_holder_that_fails_gives_the_work_back_and_a_retry_needs_no_wait(
    client: Client, aws_clients: AwsClients, decodes: Decodes, sleep: Sleeps
) -> None:
    """The holder's commit is refused (an error answer: nothing committed): it answers
    503, gives the lease back, and the client's retry processes at once."""
    started = start_upload(client)
    post_bytes(started)
    dynamodb = aws_clients.dynamodb
    injection = inject(
        dynamodb,
        "TransactWriteItems",
        lambda: client_error(dynamodb, "ValidationException", "TransactWriteItems"),
        times=1,
    )
    answer = complete(client, started["upload_id"])
    injection.remove()
    assert answer.status_code == 503, answer.body
    assert "lease_holder" not in upload_item(started["upload_id"])

    retry = complete(client, started["upload_id"])
    assert retry.status_code == 201, retry.body
    assert sleep.pauses == []
    assert decodes.count == 2
    assert retry.json_body == assert_one_image(client, started)
