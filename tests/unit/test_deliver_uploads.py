"""`make run`'s S3 notification (scripts/deliver_uploads.py, wired by scripts/run_local.py).

Deterministic: moto in-process (``mock_aws``) for the bucket -> queue notification, a
fake queue where the order of calls matters, and :meth:`Delivery.poll_once` called by
hand (no threads, no sleeps).
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from chalice.app import S3Event
from moto import mock_aws

import app as app_module
from chalicelib.storage import UPLOAD_PREFIX
from scripts.deliver_uploads import (
    DEFAULT_HANDLER,
    NOTIFICATION_ID,
    Delivery,
    app_handler,
    event_records,
    queue_name,
    subscribe,
)
from scripts.run_local import delivery_command, delivery_environment, stage_environment
from tests.unit.conftest import use_fake_aws_environment

BUCKET = "deliver-uploads-test"


class Recorder:
    """A handler that records the events it gets (and what Chalice's S3Event reads)."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.fail = fail

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.events.append(event)
        self.keys.append(S3Event(event, context).key)
        assert context.function_name == DEFAULT_HANDLER
        if self.fail:
            self.fail -= 1
            raise RuntimeError("handler failed")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(s3, sqs) clients of moto in-process, the bucket created."""
    use_fake_aws_environment(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        yield s3, boto3.client("sqs")


def _drain(delivery: Delivery) -> None:
    """Poll until a poll receives nothing (each message is delivered or left invisible)."""
    while delivery.poll_once():
        pass


def test_subscribe_notifies_a_queue_of_objects_created_under_uploads(
    aws: tuple[Any, Any],
) -> None:
    s3, sqs = aws
    other = sqs.create_queue(QueueName="someone-elses")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    kept = {"Id": "kept", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [kept]}
    )

    url = subscribe(s3, sqs, BUCKET)
    assert subscribe(s3, sqs, BUCKET) == url  # again (every `make run`): the same queue

    assert url.endswith(f"/{queue_name(BUCKET)}")
    queues = s3.get_bucket_notification_configuration(Bucket=BUCKET)["QueueConfigurations"]
    ours = [queue for queue in queues if queue["Id"] == NOTIFICATION_ID]
    assert len(ours) == 1 and len(queues) == 2
    assert ours[0]["Events"] == ["s3:ObjectCreated:*"]
    assert ours[0]["Filter"] == {
        "Key": {"FilterRules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}
    }
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert ours[0]["QueueArn"] == attributes["QueueArn"]
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{BUCKET}"}}


def test_a_presigned_post_under_uploads_reaches_the_handler_as_s3_sends_it(
    aws: tuple[Any, Any],
) -> None:
    s3, sqs = aws
    handler = Recorder()
    delivery = Delivery(sqs, subscribe(s3, sqs, BUCKET), handler, log=io.StringIO())
    key = f"{UPLOAD_PREFIX}a b+c"  # S3 URL-encodes keys in events; S3Event decodes them
    post = s3.generate_presigned_post(BUCKET, key, ExpiresIn=60)
    sent = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"bytes")})
    assert sent.status_code == 204
    s3.put_object(Bucket=BUCKET, Key="images/not-an-upload.png", Body=b"x")

    _drain(delivery)

    assert handler.keys == [key]  # the test event and images/ never reach it
    ((record,),) = [event["Records"] for event in handler.events]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == BUCKET
    assert record["s3"]["object"]["size"] == len(b"bytes")
    assert "Messages" not in sqs.receive_message(QueueUrl=delivery.queue_url)


def test_the_handler_is_app_on_upload_created_and_ingests_the_key(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs = aws
    ingested: list[str] = []

    class Uploads:
        def on_object_created(self, key: str) -> None:
            ingested.append(key)

    class Service:
        uploads = Uploads()

    monkeypatch.setattr(app_module, "image_service", Service)
    handler = app_handler()
    assert handler is app_module.on_upload_created
    delivery = Delivery(sqs, subscribe(s3, sqs, BUCKET), handler, log=io.StringIO())
    s3.put_object(Bucket=BUCKET, Key=f"{UPLOAD_PREFIX}u-1", Body=b"x")

    _drain(delivery)

    assert ingested == [f"{UPLOAD_PREFIX}u-1"]


def test_only_app_py_s_s3_handler_of_the_upload_prefix_is_accepted() -> None:
    with pytest.raises(LookupError, match=r"no @app\.on_s3_event handler 'sweep'"):
        app_handler("sweep")
    with pytest.raises(LookupError, match="on prefix 'images/'"):
        app_handler(DEFAULT_HANDLER, prefix="images/")


class FakeQueue:
    """An SQS client double: one queue, every call logged in order."""

    def __init__(self, bodies: list[str]) -> None:
        self.calls: list[str] = []
        self.messages = {
            f"m{index}": {"MessageId": f"m{index}", "ReceiptHandle": f"r{index}", "Body": body}
            for index, body in enumerate(bodies)
        }
        self.receives: dict[str, int] = {}

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["WaitTimeSeconds"] == 0  # never a long poll (moto serializes requests)
        self.calls.append("receive")
        messages = []
        for message_id, message in self.messages.items():
            self.receives[message_id] = self.receives.get(message_id, 0) + 1
            count = str(self.receives[message_id])
            messages.append({**message, "Attributes": {"ApproximateReceiveCount": count}})
        return {"Messages": messages} if messages else {}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:
        self.calls.append(f"delete {ReceiptHandle}")
        self.messages = {
            key: message
            for key, message in self.messages.items()
            if message["ReceiptHandle"] != ReceiptHandle
        }


def _s3_body(*keys: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}},
                }
                for key in keys
            ]
        }
    )


def test_a_message_is_deleted_only_after_the_handler_returned() -> None:
    queue = FakeQueue([_s3_body("uploads/one", "uploads/two")])

    def handler(event: dict[str, Any], context: Any) -> None:
        queue.calls.append(f"handle {S3Event(event, context).key}")

    assert Delivery(queue, "url", handler, log=io.StringIO()).poll_once() == 1
    # One record per invocation, as S3 invokes Lambda; the delete comes last.
    assert queue.calls == ["receive", "handle uploads/one", "handle uploads/two", "delete r0"]


def test_a_failing_handler_gets_the_event_again_then_it_is_dropped() -> None:
    queue = FakeQueue([_s3_body("uploads/flaky"), _s3_body("uploads/broken")])
    log = io.StringIO()
    handled: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        key = S3Event(event, context).key
        handled.append(key)
        if key == "uploads/broken" or handled.count(key) == 1:
            raise RuntimeError(f"cannot ingest {key}")

    delivery = Delivery(queue, "url", handler, max_attempts=3, log=log)
    delivery.poll_once()
    assert queue.calls == ["receive"]  # both failed: nothing deleted (at least once)
    delivery.poll_once()
    assert queue.calls[1:] == ["receive", "delete r0"]  # the retry of "flaky" succeeded
    delivery.poll_once()
    assert queue.calls[3:] == ["receive", "delete r1"]  # "broken": dropped after 3 attempts
    assert handled == ["uploads/flaky", "uploads/broken"] * 2 + ["uploads/broken"]
    assert "RuntimeError: cannot ingest uploads/broken" in log.getvalue()
    assert "dropped the event for uploads/broken after 3 attempts" in log.getvalue()
    assert delivery.poll_once() == 0


def test_s3_test_events_and_foreign_messages_are_deleted_unhandled() -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})
    queue = FakeQueue([test_event, "not json", json.dumps({"Records": [{"no": "s3"}]})])
    log = io.StringIO()
    handler = Recorder()

    Delivery(queue, "url", handler, log=log).poll_once()

    assert handler.events == []
    assert queue.calls == ["receive", "delete r0", "delete r1", "delete r2"]
    assert "dropped message m1: not JSON" in log.getvalue()
    assert "dropped message m2: no S3 event Records" in log.getvalue()


def test_event_records_reads_s3_notifications() -> None:
    assert event_records(_s3_body("uploads/x"))[0]["s3"]["object"]["key"] == "uploads/x"
    assert event_records(json.dumps({"Event": "s3:TestEvent"})) == []
    with pytest.raises(ValueError, match="no S3 event Records"):
        event_records("[]")


def test_queue_names_are_valid_sqs_names() -> None:
    assert queue_name("image-service-dev") == "image-service-dev-upload-events"
    long_name = queue_name("b" * 63)
    assert len(long_name) <= 80 and long_name.endswith("-upload-events")
    assert queue_name("images.example.com") == "images-example-com-upload-events"
    for name in (long_name, queue_name("a.b-c")):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name), name


def test_run_local_runs_the_delivery_with_the_stage_environment() -> None:
    stage = stage_environment("dev")
    env = delivery_environment("http://127.0.0.1:5000", stage, {"PATH": "/bin"})
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert env["BUCKET_NAME"] == stage["BUCKET_NAME"]
    assert env["TABLE_NAME"] == stage["TABLE_NAME"]
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_DEFAULT_REGION"]
    command = delivery_command("http://queue")
    assert command[1:] == [
        "-m",
        "scripts.deliver_uploads",
        "--queue-url",
        "http://queue",
        "--handler",
        "on_upload_created",
    ]


def test_run_polls_until_stopped() -> None:
    stop = threading.Event()
    queue = FakeQueue([_s3_body("uploads/x")])
    handler = Recorder()
    original = queue.receive_message

    def receive_then_stop(**kwargs: Any) -> dict[str, Any]:
        if len(queue.calls) == 2:
            stop.set()
        return original(**kwargs)

    queue.receive_message = receive_then_stop  # type: ignore[method-assign]
    Delivery(queue, "url", handler, log=io.StringIO()).run(stop, interval=0)
    assert handler.keys == ["uploads/x"]
    assert queue.calls == ["receive", "delete r0", "receive"]
