"""Failure paths: no request leaves an object without metadata or metadata without an object."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.errors import NotOwnerError
from chalicelib.reconcile import reconcile
from chalicelib.service import ImageService
from tests.unit.conftest import BUCKET, TABLE, image_bytes, post_json, upload


def _fail(operation: str) -> Any:
    def raise_error(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "InternalServerError", "Message": "injected"}}, operation
        )

    return raise_error


def _encoded_image() -> str:
    return base64.b64encode(image_bytes()).decode()


def _image_items() -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return [item for item in items if item["pk"]["S"] != "FEEDMONTHS"]


def test_failed_metadata_write_deletes_the_object(
    client, s3, service: ImageService, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(
        service.metadata._dynamodb, "transact_write_items", _fail("TransactWriteItems")
    )

    response = post_json(
        client, {"image_base64": _encoded_image(), "user_id": "alice", "tags": ["a"]}
    )

    assert response.status_code == 500
    assert response.json_body["Code"] == "InternalServerError"
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert _image_items() == []


def test_failed_object_write_writes_no_metadata(
    client, s3, service: ImageService, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(service.storage._s3, "put_object", _fail("PutObject"))

    response = post_json(client, {"image_base64": _encoded_image(), "user_id": "alice"})

    assert response.status_code == 500
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert _image_items() == []


def test_failed_object_delete_still_deletes_metadata_and_reconcile_sweeps_it(
    client, s3, service: ImageService, monkeypatch: pytest.MonkeyPatch
):
    record = upload(client, tags=["a"])
    monkeypatch.setattr(service.storage._s3, "delete_object", _fail("DeleteObject"))

    response = client.http.delete(f"/images/{record['image_id']}", headers={"X-User-Id": "alice"})

    assert response.status_code == 200
    assert _image_items() == []
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    monkeypatch.undo()
    later = datetime.now(UTC) + timedelta(hours=1)
    report = reconcile(service, apply=True, now=later)
    assert report.orphan_objects == [record["s3_key"]]
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_reconcile_reports_without_apply_and_respects_the_grace_period(client, s3, service):
    record = upload(client)
    s3.put_object(Bucket=BUCKET, Key="images/stray.png", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key=record["s3_key"])

    fresh = reconcile(service, apply=False)
    later = reconcile(service, apply=False, now=datetime.now(UTC) + timedelta(hours=1))

    assert fresh.orphan_objects == []  # younger than the grace period: maybe an upload
    assert fresh.orphan_records == [record["image_id"]]
    assert later.orphan_objects == ["images/stray.png"]
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    assert len(_image_items()) == 1


def test_reconcile_removes_records_whose_object_is_missing(client, s3, service):
    record = upload(client, tags=["a", "b"])
    s3.delete_object(Bucket=BUCKET, Key=record["s3_key"])

    report = reconcile(service, apply=True)

    assert report.orphan_records == [record["image_id"]]
    assert _image_items() == []
    assert client.http.get("/images?tag=a").json_body["items"] == []


def test_delete_transaction_checks_the_owner_in_dynamodb(client, service: ImageService):
    record = service.get_image(upload(client, tags=["a"])["image_id"])

    with pytest.raises(NotOwnerError):
        service.metadata.delete_image(record, owner="mallory")

    assert len(_image_items()) == 2
