"""The sweep (``chalicelib.sweep``), one leftover kind at a time.

For each kind a crash, a lost answer or a lost event can leave (an orphan original, an
orphan rendition, the objects of a previous version, an uploaded object of no upload or
of a finished one, a pending upload whose bytes arrived but whose event was lost, an
expired pending upload with or without its object, a record whose original is missing,
a tag item without its image): nothing younger than the grace period is touched; a dry
run reports exactly that leftover and changes nothing; a fixing run reports the same
and removes (or finishes) exactly it; a second run is clean. Then bounded slices and
the saved cursor, and the scheduled handler through the Chalice test client.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

import app as app_module
from chalicelib.config import Settings
from chalicelib.service import AwsClients, ImageService
from chalicelib.sweep import Sweep, SweepReport, SweepStopped
from chalicelib.validation import format_timestamp
from tests.faults import lost
from tests.invariants import Snapshot, client_error, inject, snapshot
from tests.unit.conftest import BUCKET, SETTINGS, TABLE, image_bytes, upload
from tests.unit.uploading import (
    MovingClock,
    complete,
    post_bytes,
    start_upload,
    status,
    upload_key,
)

GRACE = timedelta(hours=1)
#: Uploads live longer than the grace period here, so "past the grace period" and
#: "past the expiry" can be told apart.
EXPIRES = timedelta(hours=4)
SWEEP_SETTINGS = replace(
    SETTINGS,
    upload_expires_seconds=int(EXPIRES.total_seconds()),
    sweep_grace_seconds=int(GRACE.total_seconds()),
)


@pytest.fixture
def clock() -> MovingClock:
    """Overrides conftest's: the service's clock, near real time (see ``uploading``)."""
    return MovingClock()


@pytest.fixture
def settings() -> Settings:
    """Overrides conftest's: uploads that outlive the grace period."""
    return SWEEP_SETTINGS


def sweep(service: ImageService, clock: MovingClock, *, fix: bool) -> SweepReport:
    """The whole sweep at the clock's time (the service's clock too, as in production)."""
    return Sweep(service, fix=fix, grace=GRACE, clock=clock).run(max_slices=None, resume=False)


def _state() -> Snapshot:
    return snapshot(boto3.client("s3"), boto3.client("dynamodb"), BUCKET, TABLE)


def _put_object(key: str, data: bytes = b"bytes") -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data)


def _object_keys(record: dict[str, Any]) -> set[str]:
    return {record["s3_key"], *(rendition["s3_key"] for rendition in record["renditions"])}


@dataclass
class Leftover:
    """One leftover made by a test: what the sweep must report (``expected``, the
    fields of :class:`SweepReport`), how far past the grace period to sweep
    (``later``), and a check of the state after the fix."""

    expected: dict[str, Any]
    later: timedelta = 2 * GRACE
    check: Callable[[Client, Snapshot], None] = lambda client, state: None
    keep: set[str] = field(default_factory=set)


def orphan_original(client: Client, clock: MovingClock) -> Leftover:
    key = f"images/{uuid.uuid4()}/0123456789abcdef.png"
    _put_object(key, image_bytes())
    return Leftover({"orphan_objects": [key]})


def orphan_rendition(client: Client, clock: MovingClock) -> Leftover:
    key = f"renditions/{uuid.uuid4()}/0123456789abcdef-32.webp"
    _put_object(key)
    return Leftover({"orphan_objects": [key]})


def previous_version(client: Client, clock: MovingClock) -> Leftover:
    """The objects of an earlier ingest of the same image id with other bytes."""
    record = upload(client, tags=["a"])
    image_id = record["image_id"]
    old = [
        f"images/{image_id}/0000000000000000.png",
        f"renditions/{image_id}/0000000000000000-32.webp",
    ]
    for key in old:
        _put_object(key)

    def check(client: Client, state: Snapshot) -> None:
        assert set(state.objects) == _object_keys(record)
        assert client.http.get(f"/images/{image_id}").status_code == 200

    return Leftover({"orphan_objects": old}, check=check)


def upload_object_of_no_upload(client: Client, clock: MovingClock) -> Leftover:
    key = f"uploads/{uuid.uuid4()}"
    _put_object(key, image_bytes())
    return Leftover({"orphan_upload_objects": [key]})


def upload_object_of_a_ready_upload(client: Client, clock: MovingClock) -> Leftover:
    """A crash after the commit, before the uploaded object was deleted (or the client
    posted the bytes again afterwards)."""
    started = start_upload(client)
    post_bytes(started)
    assert complete(client, started["upload_id"]).status_code == 201
    _put_object(upload_key(started), image_bytes())

    def check(client: Client, state: Snapshot) -> None:
        assert status(client, started["upload_id"])["status"] == "ready"
        assert set(state.items) == {started["image_id"]}

    return Leftover({"orphan_upload_objects": [upload_key(started)]}, check=check)


def unfinished_upload(client: Client, clock: MovingClock) -> Leftover:
    """The bytes arrived in time, the S3 event was lost, nobody called ``complete``."""
    started = start_upload(client)
    post_bytes(started)

    def check(client: Client, state: Snapshot) -> None:
        body = status(client, started["upload_id"])
        assert body["status"] == "ready"
        record = body["image"]
        assert record["image_id"] == started["image_id"]
        assert set(state.objects) == _object_keys(record)  # the uploaded object is gone
        assert set(state.items) == {started["image_id"]}

    return Leftover({"unfinished_uploads": [started["upload_id"]]}, check=check)


def expired_upload(client: Client, clock: MovingClock) -> Leftover:
    """Started, never posted to, left pending past its expiry."""
    started = start_upload(client)

    return Leftover(
        {"expired_uploads": [started["upload_id"]]},
        later=EXPIRES + 2 * GRACE,
        check=_expired_check(client, started),
    )


def _expired_check(client: Client, started: dict[str, Any]) -> Callable[[Client, Snapshot], None]:
    """After the fix: the upload says ``expired``, its object is gone, and only its
    item is left (DynamoDB's TTL removes it a day after the expiry)."""

    def check(client: Client, state: Snapshot) -> None:
        assert status(client, started["upload_id"])["status"] == "expired"
        assert state.objects == {}
        assert state.items == {started["image_id"]: {(f"UPLOAD#{started['upload_id']}", "META")}}

    return check


def expired_upload_with_late_bytes(client: Client, clock: MovingClock) -> Leftover:
    """Past its expiry, with bytes that arrived after it (S3 should have refused them)."""
    # Expired half a grace period ago: not yet past the sweep's grace, like the bytes.
    clock.offset = -(EXPIRES + GRACE / 2)
    started = start_upload(client)
    clock.offset = timedelta(0)
    post_bytes(started)
    return Leftover(
        {"expired_uploads": [started["upload_id"]]}, check=_expired_check(client, started)
    )


def orphan_record(client: Client, clock: MovingClock) -> Leftover:
    """A record whose original is missing: it goes with its tag items and renditions."""
    record = upload(client, tags=["a", "b"])
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=record["s3_key"])

    def check(client: Client, state: Snapshot) -> None:
        assert client.http.get(f"/images/{record['image_id']}").status_code == 404
        assert state.items == {}
        assert state.objects == {}
        assert client.http.get("/images?tag=a").json_body["count"] == 0

    return Leftover({"orphan_records": [record["image_id"]]}, check=check)


def orphan_tag_item(client: Client, clock: MovingClock) -> Leftover:
    image_id = str(uuid.uuid4())
    item = {"pk": "TAG#z", "sk": f"{format_timestamp(clock())}#{image_id}", "image_id": image_id}
    boto3.client("dynamodb").put_item(
        TableName=TABLE, Item={name: {"S": value} for name, value in item.items()}
    )
    return Leftover({"orphan_memberships": [item]})


LEFTOVERS: dict[str, Callable[[Client, MovingClock], Leftover]] = {
    "orphan original": orphan_original,
    "orphan rendition": orphan_rendition,
    "objects of a previous version": previous_version,
    "uploaded object of no upload": upload_object_of_no_upload,
    "uploaded object of a ready upload": upload_object_of_a_ready_upload,
    "unfinished upload (event lost)": unfinished_upload,
    "expired pending upload": expired_upload,
    "expired pending upload with late bytes": expired_upload_with_late_bytes,
    "orphan record": orphan_record,
    "orphan tag item": orphan_tag_item,
}


@pytest.mark.parametrize("make", LEFTOVERS.values(), ids=LEFTOVERS.keys())
def test_the_sweep_removes_each_kind_of_leftover_once_it_is_past_the_grace_period(
    make: Callable[[Client, MovingClock], Leftover],
    client: Client,
    service: ImageService,
    clock: MovingClock,
) -> None:
    leftover = make(client, clock)
    before = _state()
    expected = SweepReport(**leftover.expected, done=True)

    young = sweep(service, clock, fix=True)
    assert young == SweepReport(fixed=True, done=True)
    assert _state() == before  # nothing younger than the grace period is touched

    clock.offset = leftover.later
    dry_run = sweep(service, clock, fix=False)
    assert dry_run == expected
    assert _state() == before  # a dry run changes nothing

    fixed = sweep(service, clock, fix=True)
    assert fixed == replace(expected, fixed=True)
    leftover.check(client, _state())

    assert sweep(service, clock, fix=True) == SweepReport(fixed=True, done=True)


def test_an_upload_whose_bytes_arrived_in_time_survives_a_sweep_that_cannot_read_them(
    client: Client, service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    """A transient S3 failure while the sweep finishes an expired upload must not cost
    the client its image: the bytes stay, and the next sweep finishes it."""
    started = start_upload(client)
    post_bytes(started)
    clock.offset = EXPIRES + 2 * GRACE
    s3 = aws_clients.s3
    injection = inject(s3, "GetObject", lambda: client_error(s3, "InternalError", "GetObject"))

    failed = sweep(service, clock, fix=True)
    injection.remove()

    assert failed.expired_uploads == [started["upload_id"]]
    assert status(client, started["upload_id"])["status"] == "pending"
    assert upload_key(started) in _state().objects  # the bytes are kept for the next run
    again = sweep(service, clock, fix=True)
    assert again.expired_uploads == [started["upload_id"]]
    body = status(client, started["upload_id"])
    assert body["status"] == "ready"
    assert set(_state().objects) == _object_keys(body["image"])
    assert sweep(service, clock, fix=True) == SweepReport(fixed=True, done=True)


# --- bounded slices, the saved cursor, the schedule -------------------------------------


def _orphan_tag_items(count: int, clock: MovingClock) -> list[dict[str, str]]:
    items = []
    for _ in range(count):
        image_id = str(uuid.uuid4())
        item = {
            "pk": "TAG#z",
            "sk": f"{format_timestamp(clock())}#{image_id}",
            "image_id": image_id,
        }
        boto3.client("dynamodb").put_item(
            TableName=TABLE, Item={name: {"S": value} for name, value in item.items()}
        )
        items.append(item)
    return items


def test_a_resumable_sweep_works_in_bounded_slices_and_continues_where_it_stopped(
    client: Client, service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    originals = sorted(f"images/{uuid.uuid4()}/0123456789abcdef.png" for _ in range(5))
    for key in originals:
        _put_object(key)
    tag_items = _orphan_tag_items(3, clock)
    reads: list[tuple[str, int]] = []

    def listing(params: dict[str, Any], **_: Any) -> None:
        reads.append(("list", params["MaxKeys"]))

    def scan(params: dict[str, Any], **_: Any) -> None:
        reads.append(("scan", params["Limit"]))

    aws_clients.s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", listing)
    aws_clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.Scan", scan)
    clock.offset = 2 * GRACE

    def scheduled_run() -> SweepReport:
        sweeper = Sweep(service, fix=True, grace=GRACE, clock=clock, slice_items=2)
        before = len(reads)
        report = sweeper.run(max_slices=2, resume=True)
        assert len(reads) - before <= 2  # at most max_slices reads, each bounded
        assert all(limit == 2 for _, limit in reads[before:])
        return report

    first = scheduled_run()
    assert first.orphan_objects == originals[:4]
    assert not first.done
    assert service.metadata.get_sweep_cursor() == {"phase": "images", "position": originals[3]}
    assert set(_state().objects) == {originals[4]}

    second = scheduled_run()
    assert second.orphan_objects == originals[4:]  # continued after the cursor
    assert not second.done

    reports = [first, second]
    while not reports[-1].done:
        assert len(reports) < 10
        reports.append(scheduled_run())

    found = [membership for report in reports for membership in report.orphan_memberships]
    assert sorted(found, key=lambda m: m["sk"]) == sorted(tag_items, key=lambda m: m["sk"])
    assert service.metadata.get_sweep_cursor() is None  # the next run starts over
    state = _state()
    assert state.objects == {}
    assert state.items == {}
    restart = Sweep(service, fix=True, grace=GRACE, clock=clock).run(max_slices=None)
    assert restart == SweepReport(fixed=True, done=True)


def test_a_dry_run_keeps_no_cursor(service: ImageService, clock: MovingClock) -> None:
    for _ in range(3):
        _put_object(f"images/{uuid.uuid4()}/0123456789abcdef.png")
    clock.offset = 2 * GRACE

    report = Sweep(service, fix=False, grace=GRACE, clock=clock, slice_items=1).run(max_slices=1)

    assert len(report.orphan_objects) == 1
    assert service.metadata.get_sweep_cursor() is None
    assert len(_state().objects) == 3


def _scheduled_event(client: Client) -> dict[str, Any]:
    event: dict[str, Any] = client.events.generate_cw_event(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={},
        resources=["arn:aws:events:us-east-1:123456789012:rule/image-service-dev-sweep"],
    )
    return event


def test_the_scheduled_handler_sweeps_with_the_configured_grace_period(
    client: Client, service: ImageService
) -> None:
    young = f"images/{uuid.uuid4()}/0123456789abcdef.png"
    _put_object(young)
    old_tag_item = {"pk": "TAG#z", "sk": f"2026-01-01T00:00:00.000Z#{uuid.uuid4()}"}
    old_tag_item["image_id"] = old_tag_item["sk"].rpartition("#")[2]
    boto3.client("dynamodb").put_item(
        TableName=TABLE, Item={name: {"S": value} for name, value in old_tag_item.items()}
    )

    client.lambda_.invoke("sweep", _scheduled_event(client))

    state = _state()
    assert set(state.objects) == {young}  # younger than SWEEP_GRACE_SECONDS: kept
    assert state.items == {}  # the old tag item is gone
    assert service.metadata.get_sweep_cursor() is None  # one run reached the end

    no_grace = replace(SWEEP_SETTINGS, sweep_grace_seconds=0)
    app_module.use_service(ImageService(service.storage, service.metadata, no_grace))
    client.lambda_.invoke("sweep", _scheduled_event(client))

    assert _state().objects == {}


def test_a_run_out_of_time_stops_after_the_slice_in_hand_with_its_cursor_saved(
    service: ImageService, clock: MovingClock
) -> None:
    originals = sorted(f"images/{uuid.uuid4()}/0123456789abcdef.png" for _ in range(3))
    for key in originals:
        _put_object(key)
    clock.offset = 2 * GRACE
    sweeper = Sweep(service, fix=True, grace=GRACE, clock=clock, slice_items=1)

    report = sweeper.run(max_slices=None, time_left_ms=lambda: 0)  # the Lambda's clock ran out

    assert report.orphan_objects == originals[:1]  # the first slice always runs
    assert service.metadata.get_sweep_cursor() == {"phase": "images", "position": originals[0]}


def test_a_failing_slice_keeps_the_progress_of_the_slices_before_it(
    service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    originals = sorted(f"images/{uuid.uuid4()}/0123456789abcdef.png" for _ in range(3))
    for key in originals:
        _put_object(key)
    clock.offset = 2 * GRACE
    failure = inject(
        aws_clients.s3,
        "ListObjectsV2",
        lambda: client_error(aws_clients.s3, "InternalError", "ListObjectsV2"),
        skip=2,
    )
    pauses: list[float] = []
    sweeper = Sweep(service, fix=True, grace=GRACE, clock=clock, slice_items=1, sleep=pauses.append)

    with pytest.raises(SweepStopped, match="InternalError") as stopped:
        sweeper.run(max_slices=None)
    failure.remove()

    assert (stopped.value.phase, stopped.value.position) == ("images", originals[1])
    assert pauses == [1.0, 2.0, 4.0]  # the third slice, tried four times

    assert service.metadata.get_sweep_cursor() == {"phase": "images", "position": originals[1]}
    assert set(_state().objects) == {originals[2]}


# --- a slow or failing emulator: each slice retried with backoff, resumable ----------


def test_a_slow_emulator_is_retried_slice_by_slice_and_each_leftover_reported_once(
    service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    originals = sorted(f"images/{uuid.uuid4()}/0123456789abcdef.png" for _ in range(3))
    for key in originals:
        _put_object(key)
    clock.offset = 2 * GRACE
    # The second object's record lookup times out twice (botocore's retries used up):
    # the slice fails half-way, after the first object was already reported.
    timeouts = inject(aws_clients.dynamodb, "GetItem", lost, skip=1, times=2)
    pauses: list[float] = []
    sweeper = Sweep(
        service, fix=False, grace=GRACE, clock=clock, slice_items=3, sleep=pauses.append
    )

    report = sweeper.run(max_slices=None, resume=False)
    timeouts.remove()

    assert pauses == [1.0, 2.0]
    assert report.orphan_objects == originals  # each once
    assert report.done


def test_a_sweep_that_cannot_go_on_stops_resumably_and_the_next_run_finishes(
    service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    originals = sorted(f"images/{uuid.uuid4()}/0123456789abcdef.png" for _ in range(3))
    for key in originals:
        _put_object(key)
    clock.offset = 2 * GRACE
    down = inject(aws_clients.s3, "ListObjectsV2", lost, skip=1)
    pauses: list[float] = []
    sweeper = Sweep(service, fix=True, grace=GRACE, clock=clock, slice_items=1, sleep=pauses.append)

    with pytest.raises(SweepStopped, match="ReadTimeoutError") as stopped:
        sweeper.run(max_slices=None)
    down.remove()

    assert stopped.value.attempts == 4 and pauses == [1.0, 2.0, 4.0]
    assert stopped.value.report.orphan_objects == originals[:1]
    assert service.metadata.get_sweep_cursor() == {"phase": "images", "position": originals[0]}
    finished = sweeper.run(max_slices=None)
    assert finished.orphan_objects == originals[1:]
    assert _state().objects == {}


def test_an_error_that_retrying_cannot_fix_stops_at_once(
    service: ImageService, clock: MovingClock, aws_clients: AwsClients
) -> None:
    _put_object(f"images/{uuid.uuid4()}/0123456789abcdef.png")
    clock.offset = 2 * GRACE
    denied = inject(
        aws_clients.s3,
        "ListObjectsV2",
        lambda: client_error(aws_clients.s3, "AccessDenied", "ListObjectsV2"),
    )
    pauses: list[float] = []
    with pytest.raises(ClientError, match="AccessDenied"):
        Sweep(service, fix=True, grace=GRACE, clock=clock, sleep=pauses.append).run()
    denied.remove()
    assert pauses == []


def test_make_reconcile_says_in_one_line_that_the_sweep_stopped(
    service: ImageService,
    aws_clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib import sweep as sweep_module

    monkeypatch.setattr(sweep_module.ImageService, "from_settings", lambda settings: service)
    monkeypatch.setattr(sweep_module.Settings, "from_env", lambda: service.settings)
    monkeypatch.setattr(sweep_module.time, "sleep", lambda seconds: None)
    _put_object(f"images/{uuid.uuid4()}/0123456789abcdef.png")
    down = inject(aws_clients.s3, "ListObjectsV2", lost)

    assert sweep_module.main(["--fix"]) == 1
    down.remove()

    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [line for line in captured.err.splitlines() if line.startswith("reconcile:")]
    assert "stopped in its images phase: one slice failed 4 times" in line
    assert "ReadTimeoutError" in line and line.endswith("run it again")
    assert "Traceback" not in captured.err
