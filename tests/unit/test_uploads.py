"""Direct uploads: ``POST /uploads``, the presigned POST, ``complete``, ``GET /uploads``,
the S3 notification handler, and every interleaving of ingests of one upload.

The bytes are posted with ``requests`` to the presigned POST's URL (``mock_aws``
answers it in-process); moto enforces none of the policy, so the policy document is
decoded and checked condition by condition, and ingest's own after-the-fact checks
(size, expiry) are tested with objects that break the policy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from chalice.test import Client

from chalicelib import imaging
from chalicelib.service import ImageService
from chalicelib.storage import upload_key
from tests.unit.conftest import (
    BUCKET,
    SETTINGS,
    TABLE,
    FixedClock,
    image_bytes,
    post_json,
)

USER = {"X-User-Id": "alice"}


@pytest.fixture
def clock() -> FixedClock:
    """Near the real time: S3's Last-Modified is real, and it must be before expiry."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5))


def start(client: Client, headers: dict[str, str] | None = None, **fields: Any) -> Any:
    body = {"user_id": "alice", "title": "Beach", "filename": "beach.png", "tags": "sea,sun"}
    return post_json(client, {**body, **fields}, path="/uploads", headers=headers)


def started(client: Client, **fields: Any) -> dict[str, Any]:
    response = start(client, **fields)
    assert response.status_code == 201, response.body
    body: dict[str, Any] = response.json_body
    return body


def post_bytes(upload: dict[str, Any], data: bytes, filename: str = "beach.png") -> None:
    """What a client does with the presigned POST: every field, then the file."""
    form = upload["upload"]
    response = requests.post(
        form["url"], data=form["fields"], files={form["file_field"]: (filename, data)}, timeout=10
    )
    assert response.status_code in (200, 201, 204), response.text


def complete(client: Client, upload_id: str, headers: dict[str, str] | None = None) -> Any:
    return client.http.post(f"/uploads/{upload_id}/complete", headers=headers or USER)


def s3_event(client: Client, key: str) -> Any:
    event = client.events.generate_s3_event(bucket=BUCKET, key=key)
    return client.lambda_.invoke("on_upload_created", event)


def objects() -> dict[str, int]:
    s3 = boto3.client("s3")
    return {
        item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    }


def items() -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=TABLE)["Items"]


def image_items() -> list[dict[str, Any]]:
    return [item for item in items() if item["pk"]["S"].startswith("IMAGE#")]


PNG = image_bytes("PNG", (900, 600))


# --- POST /uploads ----------------------------------------------------------------------


def test_start_answers_a_presigned_post_and_writes_a_pending_upload(client, clock):
    response = start(client)

    assert response.status_code == 201
    body = response.json_body
    assert response.headers["Location"] == f"/uploads/{body['upload_id']}"
    assert body["status"] == "pending"
    assert set(body) == {"upload_id", "image_id", "status", "expires_at", "upload"}
    form = body["upload"]
    assert form["method"] == "POST"
    assert form["file_field"] == "file"
    assert form["max_bytes"] == SETTINGS.max_image_bytes
    assert form["fields"]["key"] == upload_key(body["upload_id"])
    (item,) = items()
    assert item["pk"]["S"] == f"UPLOAD#{body['upload_id']}"
    assert item["status"]["S"] == "pending"
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert int(item["expires_at_epoch"]["N"]) > expires.timestamp()


def _policy(body: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(body["upload"]["fields"]["policy"]))
    return policy


def test_policy_pins_the_key_the_bucket_the_size_range_and_the_expiry(client):
    before = datetime.now(UTC).replace(microsecond=0)
    body = started(client)

    policy = _policy(body)
    conditions = policy["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert {"key": upload_key(body["upload_id"])} in conditions
    assert ["content-length-range", 1, SETTINGS.max_image_bytes] in conditions
    assert not any(
        isinstance(c, list) and c[0] == "starts-with" and c[1] == "$key" for c in conditions
    )
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    expected = before + timedelta(seconds=SETTINGS.upload_expires_seconds)
    assert expected <= expiration <= expected + timedelta(seconds=5)


def test_declared_size_makes_the_policy_allow_exactly_that_many_bytes(client):
    body = started(client, size_bytes=len(PNG))

    assert ["content-length-range", len(PNG), len(PNG)] in _policy(body)["conditions"]
    assert body["upload"]["max_bytes"] == len(PNG)


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"user_id": "alice\n"}, 400, "user_id"),
        ({"user_id": None}, 400, "user_id"),
        ({"tags": "UPPER CASE!"}, 400, "tags"),
        ({"title": "x" * 201}, 400, "title"),
        ({"metadata": {"bad key": "v"}}, 400, "metadata"),
        ({"size_bytes": 0}, 400, "size_bytes"),
        ({"size_bytes": "12"}, 400, "size_bytes"),
        ({"size_bytes": True}, 400, "size_bytes"),
        ({"size_bytes": SETTINGS.max_image_bytes + 1}, 413, "size_bytes"),
        ({"sha256": "abc"}, 400, "sha256"),
        ({"content_type": "text/plain"}, 415, "content_type"),
        ({"image_base64": "AAAA"}, 400, "image_base64"),
        ({"filename": 7}, 400, "filename"),
        ({"content_type": "image/png;\ud800"}, 400, "content_type"),
        ({"filename": "a\ud800.png"}, 400, "filename"),
    ],
)
def test_a_bad_field_is_a_4xx_naming_it_and_nothing_is_written(client, fields, status, field):
    response = start(client, **fields)

    assert response.status_code == status, response.body
    assert response.json_body["Message"].startswith(f"{field}:")
    assert items() == []
    assert objects() == {}


def test_start_takes_the_uploader_from_x_user_id(client):
    response = post_json(client, {"title": "t"}, path="/uploads", headers=USER)

    assert response.status_code == 201
    upload = response.json_body
    post_bytes(upload, PNG)
    assert complete(client, upload["upload_id"]).json_body["user_id"] == "alice"


def test_a_malformed_body_is_a_400(client):
    response = client.http.post(
        "/uploads", headers={"Content-Type": "application/json"}, body=b"{not json"
    )

    assert response.status_code == 400
    assert response.json_body["Message"].startswith("body:")


# --- complete and status ------------------------------------------------------------------


def test_upload_then_complete_makes_the_image_with_renditions(client):
    upload = started(client)
    post_bytes(upload, PNG)

    response = complete(client, upload["upload_id"])

    assert response.status_code == 201, response.body
    record = response.json_body
    assert response.headers["Location"] == f"/images/{record['image_id']}"
    assert record["image_id"] == upload["image_id"]
    assert record["title"] == "Beach"
    assert record["tags"] == ["sea", "sun"]
    assert (record["width"], record["height"], record["content_type"]) == (900, 600, "image/png")
    assert [r["size"] for r in record["renditions"]] == [320, 640, 900]
    stored = objects()
    assert upload_key(upload["upload_id"]) not in stored  # consumed
    assert set(stored) == {record["s3_key"], *(r["s3_key"] for r in record["renditions"])}
    assert stored[record["s3_key"]] == record["size_bytes"]
    listing = client.http.get("/images").json_body
    assert [item["image_id"] for item in listing["items"]] == [record["image_id"]]
    assert all("url" in r for r in listing["items"][0]["renditions"])


def test_complete_again_answers_200_with_the_same_record(client):
    upload = started(client)
    post_bytes(upload, PNG)
    first = complete(client, upload["upload_id"])

    again = complete(client, upload["upload_id"])

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json_body == first.json_body
    assert len(image_items()) == 1


def test_status_moves_from_pending_to_ready_with_the_image(client):
    upload = started(client)
    path = f"/uploads/{upload['upload_id']}"
    assert client.http.get(path).json_body == {
        key: upload[key] for key in ("upload_id", "image_id", "status", "expires_at")
    }
    post_bytes(upload, PNG)
    record = complete(client, upload["upload_id"]).json_body

    status = client.http.get(path).json_body

    assert status["status"] == "ready"
    assert status["image"] == record


def test_complete_before_the_bytes_is_409_and_changes_nothing(client):
    upload = started(client)

    response = complete(client, upload["upload_id"])

    assert response.status_code == 409
    assert response.json_body["Code"] == "ConflictError"
    assert "POST them to upload.url" in response.json_body["Message"]
    assert client.http.get(f"/uploads/{upload['upload_id']}").json_body["status"] == "pending"


@pytest.mark.parametrize("upload_id", ["7f1c1f5e-0000-4000-8000-000000000000", "not-a-uuid"])
def test_unknown_upload_is_404(client, upload_id):
    assert client.http.get(f"/uploads/{upload_id}").status_code == 404
    assert complete(client, upload_id).status_code == 404


def test_only_the_uploader_may_complete(client):
    upload = started(client)
    post_bytes(upload, PNG)

    other = complete(client, upload["upload_id"], headers={"X-User-Id": "mallory"})
    nobody = client.http.post(f"/uploads/{upload['upload_id']}/complete")

    assert (other.status_code, nobody.status_code) == (403, 401)
    assert image_items() == []


def test_expired_without_bytes_is_410_and_reports_expired(client, clock):
    upload = started(client)
    clock.now += timedelta(seconds=SETTINGS.upload_expires_seconds + 1)

    response = complete(client, upload["upload_id"])

    assert response.status_code == 410
    assert response.json_body["Code"] == "GoneError"
    assert client.http.get(f"/uploads/{upload['upload_id']}").json_body["status"] == "expired"


def test_bytes_that_arrive_after_the_expiry_are_refused_as_s3_would(client, clock):
    clock.now -= timedelta(seconds=SETTINGS.upload_expires_seconds + 60)
    upload = started(client)  # expired a minute ago by its own clock
    post_bytes(upload, PNG)  # moto does not enforce the policy's expiration

    response = complete(client, upload["upload_id"])

    assert response.status_code == 410
    assert image_items() == []
    assert objects() == {}


def test_an_upload_with_bytes_that_arrived_in_time_completes_after_the_expiry(client, clock):
    upload = started(client)
    post_bytes(upload, PNG)
    clock.now += timedelta(seconds=SETTINGS.upload_expires_seconds + 60)

    assert client.http.get(f"/uploads/{upload['upload_id']}").json_body["status"] == "pending"
    assert complete(client, upload["upload_id"]).status_code == 201


# --- refusals: the same checks as POST /images -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "data", "status", "field"),
    [
        ({}, b"just text, not an image", 415, "file"),
        ({}, PNG[: len(PNG) // 2], 415, "file"),
        ({"content_type": "image/jpeg"}, PNG, 400, "content_type"),
        ({"size_bytes": len(PNG) + 1}, PNG, 400, "size_bytes"),
        ({"sha256": "0" * 64}, PNG, 400, "sha256"),
        ({}, b"\x89PNG" + b"\0" * (SETTINGS.max_image_bytes + 1), 413, "file"),
    ],
    ids=["text", "truncated", "declared-type", "declared-size", "sha256", "too-large"],
)
def test_a_refused_object_is_deleted_and_the_upload_rejected(client, fields, data, status, field):
    upload = started(client, **fields)
    post_bytes(upload, data)  # moto enforces no content-length-range: ingest must

    response = complete(client, upload["upload_id"])
    again = complete(client, upload["upload_id"])
    status_body = client.http.get(f"/uploads/{upload['upload_id']}").json_body

    assert response.status_code == status, response.body
    assert response.json_body["Message"].startswith(f"{field}:")
    assert again.status_code == status
    assert again.json_body == response.json_body
    assert status_body["status"] == "rejected"
    assert status_body["error"] == response.json_body
    assert objects() == {}
    assert image_items() == []


def test_the_declared_sha256_accepts_the_right_bytes(client):
    upload = started(client, sha256=hashlib.sha256(PNG).hexdigest(), size_bytes=len(PNG))
    post_bytes(upload, PNG)

    assert complete(client, upload["upload_id"]).status_code == 201


# --- the S3 notification ------------------------------------------------------------------


def test_the_s3_event_completes_the_upload_so_a_client_can_just_poll(client):
    upload = started(client)
    post_bytes(upload, PNG)

    s3_event(client, upload_key(upload["upload_id"]))

    status = client.http.get(f"/uploads/{upload['upload_id']}").json_body
    assert status["status"] == "ready"
    assert status["image"]["image_id"] == upload["image_id"]


def test_a_duplicate_event_and_a_late_complete_see_one_image(client):
    upload = started(client)
    post_bytes(upload, PNG)
    key = upload_key(upload["upload_id"])

    s3_event(client, key)
    s3_event(client, key)
    late = complete(client, upload["upload_id"])

    assert late.status_code == 200
    assert len(image_items()) == 1
    assert client.http.get(f"/uploads/{upload['upload_id']}").json_body["image"] == late.json_body


def test_an_event_after_complete_changes_nothing(client):
    upload = started(client)
    post_bytes(upload, PNG)
    record = complete(client, upload["upload_id"]).json_body
    before = (objects(), items())

    s3_event(client, upload_key(upload["upload_id"]))

    assert (objects(), items()) == before
    assert client.http.get(f"/images/{record['image_id']}").status_code == 200


def test_an_event_for_a_refused_object_records_the_rejection(client):
    upload = started(client)
    post_bytes(upload, b"not an image")

    s3_event(client, upload_key(upload["upload_id"]))

    status = client.http.get(f"/uploads/{upload['upload_id']}").json_body
    assert status["status"] == "rejected"
    assert status["error"]["Code"] == "UnsupportedMediaTypeError"
    assert objects() == {}


def test_an_object_of_no_upload_is_deleted_by_its_event(client):
    s3 = boto3.client("s3")
    key = upload_key("7f1c1f5e-0000-4000-8000-000000000000")
    s3.put_object(Bucket=BUCKET, Key=key, Body=PNG)

    s3_event(client, key)

    assert objects() == {}


def test_a_re_post_after_ready_is_removed_and_changes_nothing(client):
    upload = started(client)
    post_bytes(upload, PNG)
    record = complete(client, upload["upload_id"]).json_body
    post_bytes(upload, image_bytes("PNG", (50, 50)))  # the form is valid until it expires

    s3_event(client, upload_key(upload["upload_id"]))

    assert complete(client, upload["upload_id"]).json_body == record
    assert upload_key(upload["upload_id"]) not in objects()


# --- interleavings ------------------------------------------------------------------------

#: The steps an ingest of an upload goes through, as (object, method name) to pause in.
STEPS = ["head", "get", "process", "store", "commit"]


class Pause:
    """Makes the first call of one step, on one thread, wait until released.

    ``reached`` is set when the paused call arrives; ``release()`` lets it continue.
    Other threads (the competitor) pass straight through.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: ImageService, step: str) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()
        self._thread: int | None = None
        targets: dict[str, tuple[Any, str]] = {
            "head": (service.storage, "head"),
            "get": (service.storage, "get"),
            "process": (imaging, "process"),
            "store": (service.ingest, "_store"),
            "commit": (service.metadata, "put_image"),
        }
        owner, name = targets[step]
        original: Callable[..., Any] = getattr(owner, name)

        def paused(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self._thread and not self.reached.is_set():
                self.reached.set()
                assert self._go.wait(10), "never released"
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, paused)

    def run_paused(self, work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
        """Start ``work`` on a thread that pauses at the step; returns once it is there."""
        result: list[Any] = []

        def target() -> None:
            self._thread = threading.get_ident()
            try:
                result.append(work())
            except Exception as exc:  # reported to the test through ``result``
                result.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        assert self.reached.wait(10), "the paused ingest never reached its step"
        return thread, result

    def release(self) -> None:
        self._go.set()


def _by_event(client: Client, upload: dict[str, Any]) -> Callable[[], Any]:
    return lambda: s3_event(client, upload_key(upload["upload_id"]))


def _by_complete(client: Client, upload: dict[str, Any]) -> Callable[[], Any]:
    return lambda: complete(client, upload["upload_id"])


CALLERS = {"event": _by_event, "complete": _by_complete}


#: The steps at which the first arrival holds the upload's processing lease.
LEASED_STEPS = STEPS[1:]


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of ``imaging.process`` (one per decode of an upload): the list
    grows by one per call."""
    calls: list[int] = []
    original = imaging.process

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(imaging, "process", counted)
    return calls


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("first", ["event", "complete"])
@pytest.mark.parametrize("second", ["event", "complete"])
def test_two_arrivals_at_every_step_decode_once_and_make_one_image(
    client, service, monkeypatch, sleep, step, first, second
):
    """The first arrival pauses at ``step``; the second runs; then the first finishes.
    Past the HEAD the first holds the processing lease: a second ``complete`` waits
    (its first pause lets the first finish) and answers the first's record, a second
    event returns at once. Whatever the order: one decode, one image, every caller sees
    the same record, no object is left over, the upload object is consumed."""
    upload = started(client)
    post_bytes(upload, PNG)
    decodes = count_decodes(monkeypatch)
    pause = Pause(monkeypatch, service, step)
    thread, paused_result = pause.run_paused(CALLERS[first](client, upload))

    def first_finishes() -> None:
        pause.release()
        thread.join(10)

    sleep.then = first_finishes
    second_result = CALLERS[second](client, upload)()
    first_finishes()

    (first_result,) = paused_result
    assert not isinstance(first_result, Exception), first_result
    assert len(decodes) == 1
    # Only a complete that met the first's lease waits, and the first pause ends it.
    waited = second == "complete" and step in LEASED_STEPS
    assert len(sleep.pauses) == (1 if waited else 0)
    assert len(image_items()) == 1
    status = client.http.get(f"/uploads/{upload['upload_id']}").json_body
    assert status["status"] == "ready"
    record = status["image"]
    for caller, result in ((first, first_result), (second, second_result)):
        if caller == "complete":
            assert result.status_code in (200, 201)
            assert result.json_body == record
    winner = first if step in LEASED_STEPS else second
    if winner == "complete":
        winning = first_result if step in LEASED_STEPS else second_result
        assert winning.status_code == 201
    assert set(objects()) == {record["s3_key"], *(r["s3_key"] for r in record["renditions"])}


@pytest.mark.parametrize("step", ["get", "process", "store", "commit"])
def test_different_bytes_posted_twice_at_once_never_mix(client, service, monkeypatch, sleep, step):
    """The client posts A, an ingest of A takes the lease and pauses at ``step``; the
    client posts B over it and calls ``complete``, which waits for the holder. The image
    is wholly one posting's: B's when the holder had not read A yet (its conditional
    GET finds the object changed and it reads B), A's once it had; no other object is
    left over."""
    upload = started(client)
    first_bytes, second_bytes = image_bytes("PNG", (700, 500)), image_bytes("PNG", (400, 300))
    post_bytes(upload, first_bytes)
    pause = Pause(monkeypatch, service, step)

    thread, paused_result = pause.run_paused(_by_event(client, upload))
    post_bytes(upload, second_bytes)

    def holder_finishes() -> None:
        pause.release()
        thread.join(10)

    sleep.then = holder_finishes
    answer = complete(client, upload["upload_id"])
    holder_finishes()

    assert answer.status_code == 200, answer.body
    record = answer.json_body
    expected = (400, 300) if step == "get" else (700, 500)
    assert (record["width"], record["height"]) == expected
    assert paused_result and not isinstance(paused_result[0], Exception)
    assert len(image_items()) == 1
    assert set(objects()) == {record["s3_key"], *(r["s3_key"] for r in record["renditions"])}
    stored = boto3.client("s3").get_object(Bucket=BUCKET, Key=record["s3_key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == record["sha256"]


def test_fields_that_would_overflow_the_upload_item_are_cut_to_what_matters(client):
    """A 450 KB filename or content-type parameter would make the item too large for
    DynamoDB (a 503 no retry can fix): the filename is cut (it is stored cut to 255
    anyway), the declared type is kept as its media type."""
    upload = started(
        client, filename="a" * 450_000 + ".png", content_type="image/png; x=" + "y" * 450_000
    )
    post_bytes(upload, PNG)

    record = complete(client, upload["upload_id"]).json_body

    assert record["filename"] == "a" * 251 + ".png"
    assert record["content_type"] == "image/png"


def test_an_upload_whose_image_was_deleted_stays_ready_without_it(client):
    upload = started(client)
    post_bytes(upload, PNG)
    record = complete(client, upload["upload_id"]).json_body
    assert client.http.delete(f"/images/{record['image_id']}", headers=USER).status_code == 200

    status = client.http.get(f"/uploads/{upload['upload_id']}")
    s3_event(client, upload_key(upload["upload_id"]))  # a late duplicate: no error

    assert status.status_code == 200
    assert status.json_body["status"] == "ready"
    assert "image" not in status.json_body
