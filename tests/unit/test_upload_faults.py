"""Faults at every step of a direct upload's ingest, and of the sweep (issue 10).

A crash (an exception raised by an injected hook, as a bug or a killed Lambda would
stop the code there), a lost answer (a read timeout after the call took effect), or a
call sent without an answer (a read timeout before it reached the emulator), at each
call the ingest of an uploaded object makes: reading the upload item, HeadObject,
GetObject, the CopyObject of the original and the PutObject of the rendition, the
feed-month PutItem,
TransactWriteItems, the UpdateItem that rejects an upload, and the DeleteObject of the
consumed upload object; entered through ``complete`` and through the S3 event.

Afterwards, from outside: exactly one complete image with the upload ``ready``, or
nothing visible with the upload still ``pending``; an answer never says "not saved" or
"unchanged" about what happened. Then a sweep past the grace period leaves nothing
behind (it finishes the upload: its bytes arrived in time), and a second one is clean.
The same for a crash or a lost answer at each call of the sweep itself, over one of
every kind of leftover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from chalice.test import Client

from chalicelib import ingest
from chalicelib.config import Settings
from chalicelib.keys import membership_partitions
from chalicelib.service import AwsClients, ImageService
from chalicelib.sweep import Sweep, SweepReport
from tests.faults import drained, inject_on_key
from tests.invariants import (
    Injection,
    Snapshot,
    client_error,
    complete_problems,
    inject,
    snapshot,
)
from tests.unit.conftest import BUCKET, SETTINGS, TABLE
from tests.unit.uploading import MovingClock, complete, post_bytes, s3_event, start_upload, status

GRACE = timedelta(hours=1)
SWEEP_SETTINGS = replace(
    SETTINGS, upload_expires_seconds=4 * 3600, sweep_grace_seconds=int(GRACE.total_seconds())
)

Kind = Literal["crash", "answer lost", "unanswered"]
KINDS: tuple[Kind, ...] = ("crash", "answer lost", "unanswered")


class Crash(RuntimeError):
    """What an injected crash raises: no code of the service handles it."""


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def settings() -> Settings:
    """Overrides conftest's: uploads that outlive the grace period."""
    return SWEEP_SETTINGS


@pytest.fixture(autouse=True)
def uploader(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadPoolExecutor]:
    """The ingest's S3 writer pool, this test's own, drained before the state is read."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-store")
    monkeypatch.setattr(ingest, "_uploader", pool)
    yield pool
    pool.shutdown(wait=True)


def _error(kind: Kind) -> Callable[[], Exception]:
    if kind == "crash":
        return lambda: Crash("injected crash")
    return lambda: ReadTimeoutError(endpoint_url="http://injected.invalid")


def _inject(
    clients: AwsClients, service_name: str, operation: str, kind: Kind, key_prefix: str | None
) -> Injection:
    client = clients.s3 if service_name == "s3" else clients.dynamodb
    after_call = kind == "answer lost"
    if key_prefix is not None:
        prefix = key_prefix
        return inject_on_key(
            client,
            operation,
            lambda key: key.startswith(prefix),
            _error(kind),
            after_call=after_call,
        )
    return inject(client, operation, _error(kind), after_call=after_call)


def _state() -> Snapshot:
    return snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)


def _object_keys(record: dict[str, Any]) -> set[str]:
    return {record["s3_key"], *(rendition["s3_key"] for rendition in record["renditions"])}


def _items(record: dict[str, Any], upload_id: str) -> set[tuple[str, str]]:
    """The items carrying the image's id: the image, a tag item per tag and per pair of
    tags, and the upload item."""
    partitions = membership_partitions(record["image_id"], record["tags"], SETTINGS.layout)
    sort_key = f"{record['created_at']}#{record['image_id']}"
    return {
        (f"IMAGE#{record['image_id']}", "META"),
        (f"UPLOAD#{upload_id}", "META"),
        *((partition, sort_key) for partition in partitions),
    }


def _assert_one_complete_image_or_nothing(
    client: Client, started: dict[str, Any], answer: Any | None
) -> str:
    """The upload is ``ready`` with one complete image, or ``pending`` with nothing
    visible; ``answer`` (the route's response, if any) agrees. Returns the status."""
    upload_id, image_id = started["upload_id"], started["image_id"]
    state = _state()
    body = status(client, upload_id)
    view = client.http.get(f"/images/{image_id}")
    listing = client.http.get("/images").json_body
    message = "" if answer is None or answer.status_code < 300 else answer.json_body["Message"]
    if body["status"] == "ready":
        record = body["image"]
        assert complete_problems(state, record, _items(record, upload_id)) == []
        assert set(state.objects) - {started["upload"]["fields"]["key"]} == _object_keys(record)
        assert view.status_code == 200
        assert [item["image_id"] for item in listing["items"]] == [image_id]
        if answer is not None:
            assert answer.status_code in (200, 201) or "may have been saved" in message, message
            if answer.status_code < 300:
                assert answer.json_body == record
        return "ready"
    assert body["status"] == "pending"
    assert view.status_code == 404
    assert listing["items"] == []
    assert state.items.get(image_id, set()) <= {(f"UPLOAD#{upload_id}", "META")}
    if answer is not None:
        assert answer.status_code >= 500, answer.body
    return "pending"


def _sweep(service: ImageService, clock: MovingClock) -> SweepReport:
    return Sweep(service, fix=True, grace=GRACE, clock=clock).run(max_slices=None, resume=False)


def _assert_finished_and_clean(
    client: Client, service: ImageService, clock: MovingClock, started: dict[str, Any]
) -> None:
    """Past the grace period, a sweep leaves exactly the finished image; the next finds
    nothing."""
    clock.offset = 2 * GRACE
    _sweep(service, clock)
    body = status(client, started["upload_id"])
    assert body["status"] == "ready"
    record = body["image"]
    state = _state()
    assert complete_problems(state, record, _items(record, started["upload_id"])) == []
    assert set(state.objects) == _object_keys(record)
    assert set(state.items) == {record["image_id"]}
    assert _sweep(service, clock) == SweepReport(fixed=True, done=True)


# (service, operation, key prefix): every call of an uploaded object's ingest.
INGEST_STEPS: dict[str, tuple[str, str, str | None]] = {
    "read the upload item": ("dynamodb", "GetItem", None),
    "HeadObject": ("s3", "HeadObject", None),
    "the lease's UpdateItem": ("dynamodb", "UpdateItem", None),
    "GetObject": ("s3", "GetObject", None),
    # Nothing to strip: the original is copied inside S3 from the uploaded object.
    "CopyObject of the original": ("s3", "CopyObject", "images/"),
    "PutObject of the rendition": ("s3", "PutObject", "renditions/"),
    "month-marker PutItem": ("dynamodb", "PutItem", None),
    "TransactWriteItems": ("dynamodb", "TransactWriteItems", None),
    "DeleteObject of the upload object": ("s3", "DeleteObject", None),
}


@pytest.mark.parametrize("entry", ["complete", "s3 event"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step", INGEST_STEPS.values(), ids=INGEST_STEPS.keys())
def test_a_fault_at_any_step_of_an_upload_leaves_one_image_or_nothing_and_the_sweep_finishes(
    step: tuple[str, str, str | None],
    kind: Kind,
    entry: str,
    client: Client,
    aws_clients: AwsClients,
    service: ImageService,
    clock: MovingClock,
    uploader: ThreadPoolExecutor,
) -> None:
    started = start_upload(client)
    post_bytes(started)
    injection = _inject(aws_clients, step[0], step[1], kind, step[2])

    answer = None
    if entry == "complete":
        answer = complete(client, started["upload_id"])
    else:
        try:
            s3_event(client, started["upload"]["fields"]["key"])
        except Exception as error:  # Lambda would deliver the event again
            assert isinstance(error, Crash) or "failed" in str(error), error
    drained(uploader)
    injection.remove()

    assert injection.calls, "the fault was never reached"
    _assert_one_complete_image_or_nothing(client, started, answer)
    _assert_finished_and_clean(client, service, clock, started)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ending", ["rejected", "expired"])
def test_a_fault_on_the_update_that_ends_an_upload_is_answered_truly_and_converges(
    ending: str,
    kind: Kind,
    client: Client,
    aws_clients: AwsClients,
    service: ImageService,
    clock: MovingClock,
) -> None:
    """The conditional UpdateItem that moves a pending upload to ``rejected`` (bytes
    that are no image) or ``expired`` (no bytes before the expiry) fails: the answer
    never says the upload is unchanged when it is not, and the sweep ends it."""
    if ending == "expired":
        clock.offset = -timedelta(seconds=SWEEP_SETTINGS.upload_expires_seconds + 1)
        started = start_upload(client)
        clock.offset = timedelta(0)
    else:
        started = start_upload(client)
        post_bytes(started, b"these bytes are no image")
    injection = _inject(aws_clients, "dynamodb", "UpdateItem", kind, None)

    answer = complete(client, started["upload_id"])
    injection.remove()

    assert injection.calls, "the fault was never reached"
    stored = service.metadata.get_upload(started["upload_id"])
    assert stored is not None
    assert stored.status in ("pending", ending)
    assert answer.status_code >= 500, answer.body
    if stored.status != "pending" and answer.status_code == 503:
        assert "unchanged" not in answer.json_body["Message"], answer.json_body
        assert f"may have been marked {ending}" in answer.json_body["Message"]
    clock.offset = 2 * GRACE + timedelta(seconds=SWEEP_SETTINGS.upload_expires_seconds)
    _sweep(service, clock)
    assert status(client, started["upload_id"])["status"] == ending
    state = _state()
    assert state.objects == {}
    assert set(state.items) <= {started["image_id"]}
    assert state.items.get(started["image_id"], set()) == {
        (f"UPLOAD#{started['upload_id']}", "META")
    }
    assert _sweep(service, clock) == SweepReport(fixed=True, done=True)


# --- faults in the sweep ---------------------------------------------------------------

# Every call the sweep makes, its own (the cursor's GetItem and DeleteItem too) and
# those of finishing an upload through ingest, with how many times it is made over the
# leftovers below: a fault on the first call, and on the second where there is one.
SWEEP_CALLS: dict[tuple[str, str], int] = {
    ("s3", "ListObjectsV2"): 3,
    ("s3", "HeadObject"): 6,
    ("s3", "DeleteObject"): 14,
    ("s3", "GetObject"): 1,
    ("s3", "CopyObject"): 1,
    ("s3", "PutObject"): 1,
    ("dynamodb", "GetItem"): 25,
    ("dynamodb", "Scan"): 1,
    ("dynamodb", "TransactWriteItems"): 3,
    ("dynamodb", "UpdateItem"): 2,
    ("dynamodb", "DeleteItem"): 1,
}
SWEEP_FAULTS = [
    pytest.param(call, skip, id=f"{call[1]}-{'first' if skip == 0 else 'second'} call")
    for call, count in SWEEP_CALLS.items()
    for skip in range(min(count, 2))
]


def _every_kind_of_leftover(client: Client, clock: MovingClock) -> dict[str, str]:
    """One leftover of each kind ``tests/unit/test_sweep.py`` knows; returns the
    upload ids whose end the sweep decides, with the status each must end in."""
    from tests.unit.test_sweep import LEFTOVERS

    endings = {}
    for make in LEFTOVERS.values():
        leftover = make(client, clock)
        for upload_id in leftover.expected.get("unfinished_uploads", []):
            endings[upload_id] = "ready"
        for upload_id in leftover.expected.get("expired_uploads", []):
            endings[upload_id] = "expired"
    return endings


def _assert_nothing_left_behind(client: Client, endings: dict[str, str]) -> None:
    """Every object is named by an image record, every item carrying an image id is
    its image's or an upload's, and each upload ended as it must."""
    state = _state()
    named = set()
    for image_id, item in state.image_items.items():
        named |= {item["s3_key"], *(rendition["s3_key"] for rendition in item["renditions"])}
        assert client.http.get(f"/images/{image_id}").status_code == 200
    assert set(state.objects) <= named
    for image_id, keys in state.items.items():
        if image_id not in state.image_items:
            assert all(pk.startswith("UPLOAD#") for pk, _ in keys), keys
    for upload_id, ending in endings.items():
        assert status(client, upload_id)["status"] == ending


@pytest.mark.parametrize("kind", ["crash", "answer lost"])
@pytest.mark.parametrize(("call", "skip"), SWEEP_FAULTS)
def test_a_fault_in_the_sweep_is_made_good_by_the_next_sweep(
    call: tuple[str, str],
    skip: int,
    kind: Kind,
    client: Client,
    aws_clients: AwsClients,
    service: ImageService,
    clock: MovingClock,
    uploader: ThreadPoolExecutor,
) -> None:
    endings = _every_kind_of_leftover(client, clock)
    clock.offset = timedelta(seconds=SWEEP_SETTINGS.upload_expires_seconds) + 2 * GRACE
    service_name, operation = call
    target = aws_clients.s3 if service_name == "s3" else aws_clients.dynamodb
    after_call = kind == "answer lost"
    injection = inject(target, operation, _error(kind), after_call=after_call, skip=skip, times=1)

    try:  # as scheduled (resumable: the cursor is read and cleared), to the end
        Sweep(service, fix=True, grace=GRACE, clock=clock).run(max_slices=None, resume=True)
    except Exception as error:  # the schedule runs it again
        assert isinstance(error, Crash | ReadTimeoutError), error
    drained(uploader)
    injection.remove()

    assert len(injection.calls) > skip, "the fault was never reached"

    recovered = _sweep(service, clock)
    assert recovered.done
    _assert_nothing_left_behind(client, endings)
    assert _sweep(service, clock) == SweepReport(fixed=True, done=True)


# --- a fault in one ingest while another ingest of the same upload commits --------------


@pytest.mark.parametrize("failing", ["PutObject", "TransactWriteItems"])
def test_a_failing_ingest_never_deletes_the_objects_a_concurrent_ingest_committed(
    failing: str,
    client: Client,
    aws_clients: AwsClients,
    service: ImageService,
    clock: MovingClock,
) -> None:
    """The S3 event and ``complete`` ingest the same upload at once: the same bytes,
    the same keys. ``complete``'s ingest outlives its processing lease, the event takes
    the work over and commits while ``complete``'s fails (its rendition put, or its
    transaction answered with an error); the failing one must not delete the objects the
    committed image names."""
    started = start_upload(client)
    post_bytes(started)
    s3, dynamodb = aws_clients.s3, aws_clients.dynamodb
    competitor: list[Any] = []

    def commit_the_competitor_then_fail() -> Exception:
        """Runs at the failing call of ``complete``'s ingest: the event's whole ingest
        first (once), then the failure."""
        if not competitor:
            competitor.append(None)
            clock.offset += timedelta(seconds=SWEEP_SETTINGS.upload_lease_seconds)
            upload = service.metadata.get_upload(started["upload_id"])
            assert upload is not None
            competitor.append(service.uploads.finish(upload))
        client_for = s3 if failing == "PutObject" else dynamodb
        code = "InternalError" if failing == "PutObject" else "InternalServerError"
        return client_error(client_for, code, failing)

    if failing == "PutObject":
        injection = inject_on_key(
            s3,
            "PutObject",
            lambda key: key.startswith("renditions/") and not competitor,
            commit_the_competitor_then_fail,
        )
    else:
        injection = inject(dynamodb, "TransactWriteItems", commit_the_competitor_then_fail, times=1)

    answer = complete(client, started["upload_id"])
    injection.remove()

    assert competitor[-1].created  # the event's ingest committed the image
    body = status(client, started["upload_id"])
    assert body["status"] == "ready"
    record = body["image"]
    state = _state()
    assert complete_problems(state, record, _items(record, started["upload_id"])) == []
    assert set(state.objects) == _object_keys(record)
    assert answer.status_code in (200, 201, 503), answer.body
    if answer.status_code == 503:
        assert "not saved" not in answer.json_body["Message"], answer.json_body
