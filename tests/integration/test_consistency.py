"""Over real HTTP to moto's server: ``make reconcile``'s command, and the retry mode.

- The reconcile command (``python -m scripts.reconcile``, what ``make reconcile`` runs:
  the sweep of ``chalicelib.sweep``) reports each kind of leftover, ``--fix`` removes
  exactly those, and a second dry run finds nothing.
- Throttling answers go through botocore's standard retry mode: a throttled attempt is
  retried and the upload completes; throttling on every attempt ends, after
  ``AWS_MAX_ATTEMPTS``, in a 503 that leaves nothing stored. (Canned answers need real
  HTTP: under moto's in-process mock the request would still be applied.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from chalicelib.errors import DependencyError, to_chalice_error
from chalicelib.service import AWS_MAX_ATTEMPTS, AwsClients, ImageService
from scripts.emulator import MotoServer
from scripts.run_local import PROJECT_DIR
from tests.integration.support import child_environment
from tests.integration.wiring import TOKEN_SECRET, png, upload_request, wire_service
from tests.invariants import (
    WrittenKeys,
    complete_problems,
    respond_with_error,
    snapshot,
)

SLOW_DOWN = (
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
DDB_THROTTLED = (
    b'{"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
    b' "message": "Rate of requests exceeds the allowed throughput."}'
)


@pytest.fixture
def wired(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[ImageService, AwsClients, WrittenKeys]:
    service, clients = wire_service(moto_server.endpoint_url, "consistency", monkeypatch)
    return service, clients, WrittenKeys(clients.dynamodb)


def _reconcile_command(service: ImageService, endpoint_url: str, *args: str) -> dict[str, Any]:
    """Run ``python -m scripts.reconcile --grace-minutes 0 ARGS`` on ``service``'s bucket
    and table; its JSON report."""
    env = child_environment(
        AWS_ENDPOINT_URL=endpoint_url,
        BUCKET_NAME=service.storage.bucket,
        TABLE_NAME=service.metadata.table_name,
        TOKEN_SECRET=TOKEN_SECRET,
    )
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.reconcile", "--grace-minutes", "0", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_reconcile_command_reports_each_kind_of_orphan_and_fix_removes_them(
    wired: tuple[ImageService, AwsClients, WrittenKeys], moto_server: MotoServer
):
    service, clients, written = wired
    bucket, table = service.storage.bucket, service.metadata.table_name
    kept, no_object, no_image = (
        service.upload(upload_request(png(index), "alice", tags))
        for index, tags in enumerate((["a", "b"], ["a"], ["b", "c"]))
    )
    clients.s3.delete_object(Bucket=bucket, Key=no_object.s3_key)
    clients.dynamodb.delete_item(
        TableName=table, Key={"pk": {"S": f"IMAGE#{no_image.image_id}"}, "sk": {"S": "META"}}
    )
    stray_key = f"images/{uuid.uuid4()}/0123456789abcdef.png"
    clients.s3.put_object(Bucket=bucket, Key=stray_key, Body=png(99))
    stray = {"pk": "TAG#z", "sk": f"2026-01-01T00:00:00.000Z#{uuid.uuid4()}"}
    stray["image_id"] = stray["sk"].rpartition("#")[2]
    clients.dynamodb.put_item(
        TableName=table, Item={name: {"S": value} for name, value in stray.items()}
    )
    lost_memberships = [
        {"pk": pk, "sk": sk, "image_id": no_image.image_id}
        for pk, sk in written.of(no_image.image_id)
        if pk.startswith("TAG#")
    ]
    expected = {
        # Phase by phase (images/, then renditions/), each in key order.
        "orphan_objects": sorted([stray_key, *no_image.object_keys]),
        "orphan_upload_objects": [],
        "unfinished_uploads": [],
        "orphan_records": [no_object.image_id],
        "orphan_memberships": sorted(
            [*lost_memberships, stray], key=lambda item: (item["pk"], item["sk"])
        ),
        "expired_uploads": [],
    }

    dry_run = _reconcile_command(service, moto_server.endpoint_url)
    fixed = _reconcile_command(service, moto_server.endpoint_url, "--fix")
    again = _reconcile_command(service, moto_server.endpoint_url)

    def in_key_order(report: dict[str, Any]) -> dict[str, Any]:
        """``report`` with its memberships in key order (the Scan's order is the table's)."""
        memberships = sorted(report["orphan_memberships"], key=lambda m: (m["pk"], m["sk"]))
        return {**report, "orphan_memberships": memberships}

    assert len(expected["orphan_memberships"]) == 4
    assert in_key_order(dry_run) == {**expected, "fixed": False, "done": True}
    assert in_key_order(fixed) == {**expected, "fixed": True, "done": True}
    assert again == {
        **{name: [] for name in expected},
        "fixed": False,
        "done": True,
    }
    state = snapshot(clients.s3, clients.dynamodb, bucket, table)
    assert set(state.items) == {kept.image_id}
    assert set(state.objects) == set(kept.object_keys)
    assert complete_problems(state, kept.to_dict(), written.of(kept.image_id)) == []


def test_a_throttled_attempt_is_retried_and_the_upload_completes(
    wired: tuple[ImageService, AwsClients, WrittenKeys],
):
    service, clients, written = wired
    attempts = respond_with_error(clients.s3, "PutObject", 503, SLOW_DOWN, times=1)

    record = service.upload(upload_request(png(1), "alice", ["a"]))

    # The throttled attempt, its retry, and the put of the other object (original and
    # one rendition).
    assert len(attempts.calls) == 3
    state = snapshot(
        clients.s3, clients.dynamodb, service.storage.bucket, service.metadata.table_name
    )
    assert complete_problems(state, record.to_dict(), written.of(record.image_id)) == []


def test_throttling_on_every_attempt_is_a_503_and_stores_nothing(
    wired: tuple[ImageService, AwsClients, WrittenKeys],
):
    service, clients, _ = wired
    attempts = respond_with_error(clients.dynamodb, "TransactWriteItems", 400, DDB_THROTTLED)

    with pytest.raises(DependencyError) as raised:
        service.upload(upload_request(png(2), "alice", ["a"]))

    assert len(attempts.calls) == AWS_MAX_ATTEMPTS
    error = to_chalice_error(raised.value)
    assert error.STATUS_CODE == 503
    assert str(error) == (
        "dynamodb: saving the image's metadata failed "
        "(ProvisionedThroughputExceededException, throttled); the image was not saved; retry"
    )
    state = snapshot(
        clients.s3, clients.dynamodb, service.storage.bucket, service.metadata.table_name
    )
    assert state.items == {}
    assert state.objects == {}
