"""`make run`'s S3 notification: deliver "object created under ``uploads/``" to the app.

Deployed, the bucket notifies the ``on_upload_created`` Lambda (``@app.on_s3_event``)
itself. moto invokes no Lambda, and LocalStack only does for the stack `make deploy`
created, so `make run` wires the same event path by hand:

1. :func:`subscribe` (in ``scripts.run_local``): the bucket notifies an SQS queue of
   every ``s3:ObjectCreated:*`` under :data:`chalicelib.storage.UPLOAD_PREFIX` (moto's
   server and LocalStack both send S3 event notifications to SQS; moto does for
   presigned POSTs too, ``eventName`` ``ObjectCreated:Post``).
2. :class:`Delivery` (``python -m scripts.deliver_uploads``, a child process of
   ``run_local`` with the stage's environment, as ``chalice local`` has it) polls that
   queue and hands each S3 event record, as ``{"Records": [record]}`` (the JSON S3
   sends Lambda), to ``app.on_upload_created`` with a Lambda-like context: the very
   handler the deployed notification invokes, through Chalice's own ``S3Event``
   wrapper.

Delivery is at least once, as S3's: a message is deleted only after the handler
returned for every record in it. A handler that raises leaves the message on the queue,
visible again after :data:`VISIBILITY_TIMEOUT_SECONDS`; after :data:`MAX_ATTEMPTS`
receives it is dropped with a log line, as Lambda drops an asynchronous event after
its retries. S3's ``s3:TestEvent`` (sent when the notification is configured) is
deleted unhandled.

The queue is short-polled (``WaitTimeSeconds=0``) every :data:`POLL_INTERVAL_SECONDS`:
``scripts.emulator`` serves moto one request at a time, and moto answers a long poll by
waiting inside the request, which would hold every other request for that long.

Usage: ``python -m scripts.deliver_uploads --queue-url URL [--handler on_upload_created]``
(environment: the stage's variables, ``AWS_ENDPOINT_URL``, credentials, region).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO
from urllib.parse import unquote_plus

from chalicelib.storage import UPLOAD_PREFIX

#: The notification's Id in the bucket's configuration (replaced on every `make run`).
NOTIFICATION_ID = "make-run-upload-events"
EVENTS = ["s3:ObjectCreated:*"]
#: Seconds a received message stays invisible; a failed delivery is retried after it.
VISIBILITY_TIMEOUT_SECONDS = 30
#: Receives after which a message whose handler keeps failing is dropped.
MAX_ATTEMPTS = 3
POLL_INTERVAL_SECONDS = 0.2
DEFAULT_HANDLER = "on_upload_created"

#: A Lambda handler as Chalice's decorators leave it: called with (event dict, context).
Handler = Callable[[dict[str, Any], Any], object]


def queue_name(bucket: str) -> str:
    """The SQS queue `make run` subscribes to ``bucket``'s upload events.

    SQS names are at most 80 of ``[A-Za-z0-9_-]``: dots (allowed in bucket names) become
    ``-`` and a long bucket name is cut from the front.
    """
    return f"{bucket.replace('.', '-')}-upload-events"[-80:].lstrip("-")


def subscribe(s3: Any, sqs: Any, bucket: str, prefix: str = UPLOAD_PREFIX) -> str:
    """Make ``bucket`` notify an SQS queue of objects created under ``prefix``.

    Creates the queue (:func:`queue_name`) when missing, with a policy that lets S3
    send from ``bucket`` only (needed on AWS and LocalStack with IAM enforcement, ignored
    by moto), and puts the bucket's notification configuration: other configurations
    are kept, a queue configuration with :data:`NOTIFICATION_ID` is replaced.

    Args:
        s3: boto3 S3 client of the emulator.
        sqs: boto3 SQS client of the emulator.
        bucket: the bucket the app stores into (the stage's ``BUCKET_NAME``).
        prefix: the key prefix the app's ``on_s3_event`` filters on.

    Returns:
        The queue's URL, for :class:`Delivery`.

    Raises:
        botocore.exceptions.ClientError: the emulator refused a call.
    """
    url: str = sqs.create_queue(
        QueueName=queue_name(bucket),
        Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS)},
    )["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BucketSendsUploadEvents",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration = {
        key: value
        for key, value in current.items()
        if key
        in (
            "TopicConfigurations",
            "QueueConfigurations",
            "LambdaFunctionConfigurations",
            "EventBridgeConfiguration",
        )
    }
    queues = [
        queue
        for queue in configuration.get("QueueConfigurations", [])
        if queue.get("Id") != NOTIFICATION_ID
    ]
    queues.append(
        {
            "Id": NOTIFICATION_ID,
            "QueueArn": arn,
            "Events": EVENTS,
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
        }
    )
    configuration["QueueConfigurations"] = queues
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    return url


def event_records(body: str) -> list[dict[str, Any]]:
    """The S3 event records in an SQS message body S3 sent.

    Returns:
        ``body``'s ``Records`` (each one S3 event record); ``[]`` for S3's
        ``s3:TestEvent``.

    Raises:
        ValueError: ``body`` is not an S3 notification.
    """
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if isinstance(message, dict) and message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records") if isinstance(message, dict) else None
    if not isinstance(records, list) or not all(
        isinstance(record, dict) and isinstance(record.get("s3"), dict) for record in records
    ):
        raise ValueError("no S3 event Records")
    return records


class LambdaContext:
    """The attributes of a Lambda context that handlers commonly read."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 2048
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "make-run"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds before a deployed invocation would time out (the handler's 120 s)."""
        return 120_000


@dataclass
class Delivery:
    """Hands the upload events queued in ``queue_url`` to ``handler``.

    Attributes:
        sqs: boto3 SQS client.
        queue_url: the queue :func:`subscribe` returned.
        handler: called as ``handler({"Records": [record]}, context)`` per record.
        function_name: the deployed function's name, for the context and the log.
        max_attempts: receives after which a failing message is dropped.
        log: where deliveries and failures are reported.
    """

    sqs: Any
    queue_url: str
    handler: Handler
    function_name: str = DEFAULT_HANDLER
    max_attempts: int = MAX_ATTEMPTS
    log: TextIO = field(default_factory=lambda: sys.stderr)

    def poll_once(self) -> int:
        """Receive once (no wait) and deliver what came.

        Returns:
            How many messages were received (0: the queue was empty).

        Raises:
            botocore.exceptions.ClientError: receiving or deleting failed.
        """
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = received.get("Messages", [])
        for message in messages:
            if self._deliver(message):
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return len(messages)

    def _deliver(self, message: dict[str, Any]) -> bool:
        """Run the handler for each record; whether the message is done with."""
        try:
            records = event_records(message.get("Body", ""))
        except ValueError as error:
            self._say(f"dropped message {message.get('MessageId')}: {error}")
            return True
        for record in records:
            key = unquote_plus(str(record["s3"].get("object", {}).get("key", "?")))
            try:
                self.handler({"Records": [record]}, LambdaContext(self.function_name))
            except Exception:
                attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                self._say(f"{self.function_name} failed for {key} (attempt {attempts}):")
                self.log.write(traceback.format_exc())
                if attempts >= self.max_attempts:
                    self._say(f"dropped the event for {key} after {attempts} attempts")
                    return True
                return False
            self._say(f"{record.get('eventName', 'event')} {key} -> {self.function_name}")
        return True

    def _say(self, text: str) -> None:
        self.log.write(f"deliver_uploads: {text}\n")
        self.log.flush()

    def run(self, stop: threading.Event, interval: float = POLL_INTERVAL_SECONDS) -> None:
        """Poll until ``stop`` is set, waiting ``interval`` seconds after an empty poll."""
        while not stop.is_set():
            if self.poll_once() == 0:
                stop.wait(interval)


def app_handler(name: str = DEFAULT_HANDLER, prefix: str = UPLOAD_PREFIX) -> Handler:
    """``app.NAME`` (``app.py`` imported with this process's environment), checked to be
    the ``@app.on_s3_event`` handler of ``prefix``.

    Raises:
        LookupError: app.py has no such S3 event handler.
    """
    import app as app_module

    sources = {
        source.name: source
        for source in app_module.app.event_sources
        if type(source).__name__ == "S3EventConfig"
    }
    source = sources.get(name)
    if source is None or getattr(source, "prefix", None) != prefix:
        raise LookupError(f"app.py has no @app.on_s3_event handler {name!r} on prefix {prefix!r}")
    handler: Handler = getattr(app_module, name)
    return handler


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Deliver upload events until SIGINT/SIGTERM; return the exit status."""
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--queue-url", required=True, help="the queue subscribe() returned")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="app.py's S3 handler")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        handler = app_handler(args.handler)
        Delivery(boto3.client("sqs"), args.queue_url, handler, function_name=args.handler).run(
            threading.Event()
        )
    except KeyboardInterrupt:
        return 0
    except LookupError as error:
        print(f"deliver_uploads: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
