"""The consistency invariant, checked from outside the service, and fault injection.

After any request, an image is either complete (its image item, every item its upload
transaction wrote, and its object with the right bytes) or gone (no item carrying its
id, no object). The items an upload writes are learned by watching the service's own
DynamoDB client (:class:`WrittenKeys`), so these checks hold whatever the key layout.

Faults are injected through botocore's event hooks on the service's clients
(:func:`inject`), never by patching our code.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.awsrequest import AWSResponse

from chalicelib.keys import LAYOUT_ATTRIBUTE

Key = tuple[str, str]

_deserializer = TypeDeserializer()


class WrittenKeys:
    """Watches a DynamoDB client: the ``(pk, sk)`` of every item a ``TransactWriteItems``
    puts, grouped by the item's ``image_id`` attribute. Thread-safe."""

    def __init__(self, dynamodb: Any) -> None:
        self._keys: dict[str, set[Key]] = defaultdict(set)
        self._lock = threading.Lock()
        dynamodb.meta.events.register(
            "before-parameter-build.dynamodb.TransactWriteItems", self._observe
        )

    def _observe(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            for action in params.get("TransactItems", []):
                item = action.get("Put", {}).get("Item", {})
                if "image_id" in item:
                    key = (item["pk"]["S"], item["sk"]["S"])
                    self._keys[item["image_id"]["S"]].add(key)

    def image_ids(self) -> list[str]:
        """Every image id a transaction tried to write, in no particular order."""
        with self._lock:
            return list(self._keys)

    def of(self, image_id: str) -> set[Key]:
        """Keys the service tried to write for ``image_id`` (empty if it never tried)."""
        with self._lock:
            return set(self._keys.get(image_id, set()))


@dataclass
class Snapshot:
    """The bucket and table as seen at one moment.

    Attributes:
        items: image id -> keys of every item carrying that ``image_id`` attribute.
        image_items: image id -> the deserialized image item (``sk == "META"``).
        other_items: keys of items carrying no ``image_id`` (feed-month markers...).
        objects: S3 key -> SHA-256 hex digest of the object's bytes.
        object_metadata: S3 key -> the object's user metadata.
    """

    items: dict[str, set[Key]] = field(default_factory=dict)
    image_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    other_items: set[Key] = field(default_factory=set)
    objects: dict[str, str] = field(default_factory=dict)
    object_metadata: dict[str, dict[str, str]] = field(default_factory=dict)


def snapshot(s3: Any, dynamodb: Any, bucket: str, table: str) -> Snapshot:
    """Read the whole table (consistent Scan) and every object's bytes."""
    result = Snapshot()
    items: dict[str, set[Key]] = defaultdict(set)
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page["Items"]:
            item = {name: _deserializer.deserialize(value) for name, value in raw.items()}
            key = (item["pk"], item["sk"])
            if "image_id" not in item:
                result.other_items.add(key)
                continue
            items[item["image_id"]].add(key)
            if item["sk"] == "META" and str(item["pk"]).startswith("IMAGE#"):
                result.image_items[item["image_id"]] = item  # not the upload item (UPLOAD#)
    result.items = dict(items)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            response = s3.get_object(Bucket=bucket, Key=entry["Key"])
            result.objects[entry["Key"]] = hashlib.sha256(response["Body"].read()).hexdigest()
            result.object_metadata[entry["Key"]] = response.get("Metadata", {})
    return result


def complete_problems(state: Snapshot, record: dict[str, Any], written: set[Key]) -> list[str]:
    """What is wrong with ``record`` (the API's record of an image) being complete:
    its image item equal to it, exactly the ``written`` items, its object with the
    record's SHA-256. Empty when complete."""
    image_id = record["image_id"]
    problems = []
    item = state.image_items.get(image_id)
    if item is None:
        problems.append(f"{image_id}: no image item")
    else:
        differing = sorted(name for name, value in record.items() if item.get(name) != value)
        if differing:
            problems.append(f"{image_id}: image item differs in {differing}")
    if not written:
        problems.append(f"{image_id}: no transaction was seen writing it")
    have = state.items.get(image_id, set())
    if have != written:
        missing, unexpected = sorted(written - have), sorted(have - written)
        problems.append(f"{image_id}: items missing {missing}, unexpected {unexpected}")
    digest = state.objects.get(record["s3_key"])
    if digest is None:
        problems.append(f"{image_id}: no object at {record['s3_key']}")
    elif digest != record["sha256"]:
        problems.append(f"{image_id}: object bytes have SHA-256 {digest}, not {record['sha256']}")
    return problems


def gone_problems(state: Snapshot, image_id: str, s3_key: str | None) -> list[str]:
    """What is left of an image that should be gone: items carrying its id, its object."""
    problems = []
    if state.items.get(image_id):
        problems.append(f"{image_id}: items left {sorted(state.items[image_id])}")
    if s3_key is not None and s3_key in state.objects:
        problems.append(f"{image_id}: object left at {s3_key}")
    return problems


@dataclass
class Injection:
    """A hook registered on a client: ``calls`` has one entry per call (or, inside the
    retry loop, per attempt) it saw, the HTTP request where there is one; ``remove()``
    unregisters it."""

    client: Any
    event: str
    handler: Callable[..., Any]
    calls: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, self.handler)


def inject(
    client: Any,
    operation: str,
    error: Callable[[], Exception],
    *,
    after_call: bool = False,
    skip: int = 0,
    times: int | None = None,
) -> Injection:
    """Make ``client``'s ``operation`` (e.g. ``"PutObject"``) raise ``error()``.

    Args:
        client: a boto3 client the service uses.
        operation: the API operation name.
        error: builds the exception to raise.
        after_call: raise after the call took effect (an answer lost on the way back),
            instead of before it was sent (the dependency never saw it).
        skip: let this many calls through first.
        times: fail this many calls, then let the rest through (None: all of them).

    The hook runs outside botocore's retry loop, so the error is what the service sees
    after retries: :func:`fail_attempts` and :func:`respond_with_error` exercise the
    retries themselves.
    """
    calls: list[Any] = []

    def fail(**_: Any) -> None:
        calls.append(None)
        failed_so_far = len(calls) - 1 - skip
        if failed_so_far >= 0 and (times is None or failed_so_far < times):
            raise error()

    return _register(client, "after-call" if after_call else "before-call", operation, fail, calls)


def fail_attempts(
    client: Any, operation: str, error: Callable[[], Exception], times: int | None = None
) -> Injection:
    """Make attempts of ``client``'s ``operation`` raise ``error()`` (a connection error,
    say) instead of being sent: inside botocore's retry loop (``before-send``), so the
    retry mode decides whether to try again.

    Args:
        times: fail this many attempts, then send the rest (None: all of them).

    Raising stops botocore's handlers there, so this also holds under moto's in-process
    ``mock_aws`` (whose stubber is a later ``before-send`` handler): the request is
    never applied.
    """
    attempts: list[Any] = []

    def fail(request: Any, **_: Any) -> None:
        attempts.append(request)
        if times is None or len(attempts) <= times:
            raise error()

    return _register(client, "before-send", operation, fail, attempts)


def _register(
    client: Any, event: str, operation: str, handler: Callable[..., Any], calls: list[Any]
) -> Injection:
    service = client.meta.service_model.service_id.hyphenize()
    injection = Injection(client, f"{event}.{service}.{operation}", handler, calls)
    client.meta.events.register(injection.event, handler)
    return injection


def client_error(client: Any, code: str, operation: str, **response: Any) -> Exception:
    """The exception ``client`` raises for an error answer with ``code`` (its modeled
    class when there is one, e.g. ``TransactionCanceledException``), with ``response``
    merged into the parsed response (e.g. ``CancellationReasons``)."""
    parsed = {"Error": {"Code": code, "Message": "injected"}, **response}
    error_class = client.exceptions.from_code(code)
    exception: Exception = error_class(parsed, operation)
    return exception


class _Raw:
    """The raw body of a canned HTTP response (what botocore reads via ``stream()``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def respond_with_error(
    client: Any, operation: str, status: int, body: bytes, times: int | None = None
) -> Injection:
    """Answer ``client``'s ``operation`` with a canned HTTP error instead of sending it,
    inside botocore's retry loop (``before-send``), so the retry mode sees each answer.

    Args:
        status: the HTTP status (e.g. 503 for S3's SlowDown, 400 for DynamoDB throttling).
        body: the error body in the service's protocol (XML for S3, JSON for DynamoDB).
        times: answer this many attempts so, then send the rest (None: all of them).

    Over real HTTP only (moto's server): under moto's in-process ``mock_aws``, botocore
    calls every ``before-send`` handler and takes the first answer, so moto's stubber
    would still apply the request behind the canned answer.
    """
    attempts: list[Any] = []
    content_type = "application/xml" if body.startswith(b"<") else "application/x-amz-json-1.0"

    def answer(request: Any, **_: Any) -> Any:
        attempts.append(request)
        if times is not None and len(attempts) > times:
            return None
        return AWSResponse(request.url, status, {"Content-Type": content_type}, _Raw(body))

    return _register(client, "before-send", operation, answer, attempts)


#: Attributes only the image item has: its key, its index keys and the shard layout its
#: keys were written with (``chalicelib.keys.LAYOUT_ATTRIBUTE``).
_IMAGE_ONLY_ATTRIBUTES = frozenset(
    {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", LAYOUT_ATTRIBUTE}
)


def membership_problems(
    dynamodb: Any, table: str, expected_keys: Callable[[str], set[Key]]
) -> list[str]:
    """What breaks "every membership item matches its image": a membership item (an item
    carrying ``image_id`` that is neither an image item nor an upload item) whose image
    item is missing, or whose listing fields differ from the image item's; an image
    whose membership items are not exactly ``expected_keys(image_id)`` (the service's
    own layout, so the check holds whatever the partitions become). Empty when sound."""
    images: dict[str, dict[str, Any]] = {}
    memberships: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page["Items"]:
            item = {name: _deserializer.deserialize(value) for name, value in raw.items()}
            if "image_id" not in item or str(item["pk"]).startswith("UPLOAD#"):
                continue
            if item["sk"] == "META" and str(item["pk"]).startswith("IMAGE#"):
                images[item["image_id"]] = item
            else:
                memberships[item["image_id"]].append(item)
    problems = []
    for image_id, items in sorted(memberships.items()):
        image = images.get(image_id)
        if image is None:
            problems.append(f"{image_id}: membership items without an image {_keys(items)}")
            continue
        for item in items:
            differing = sorted(
                name
                for name in set(item) | set(image)
                if name not in _IMAGE_ONLY_ATTRIBUTES and item.get(name) != image.get(name)
            )
            if differing:
                problems.append(f"{image_id}: {item['pk']} differs from its image in {differing}")
    for image_id in sorted(images):
        have = set(_keys(memberships.get(image_id, [])))
        want = expected_keys(image_id)
        if have != want:
            problems.append(
                f"{image_id}: memberships missing {sorted(want - have)}, "
                f"unexpected {sorted(have - want)}"
            )
    return problems


def _keys(items: list[dict[str, Any]]) -> list[Key]:
    return sorted((str(item["pk"]), str(item["sk"])) for item in items)
