"""DynamoDB metadata: image records, tag memberships and listings, in one table.

Why a wrapper: the single-table layout (see ``chalicelib/schema.py``) means one image is
several items (the image, one per tag, a feed-month marker) that must be written and
deleted together, and every listing must be a Query on a partition that holds only
matching items. The key formats and the shard rule are ``chalicelib/keys.py``'s; this
module builds the items from them (:func:`image_item`, :func:`membership_items`).

Listing strategies (no request path ever Scans); "shards" are the unsharded key and
its ``#{shard}`` partitions (``keys.shard_keys``), read by the k-way merge of
``chalicelib/listing.py``:

- ``user_id`` given: Query GSI1 ``USER#{user_id}`` (never sharded); tags and title are
  filters.
- else two or more tags: the shards of the tag-pair partition ``TAG#{a}+{b}`` of the
  first two tags in sorted order, which hold exactly the images carrying both; further
  tags and title are filters.
- else one tag: the shards of ``TAG#{tag}``; title is a filter.
- else: the shards of GSI2 ``FEED#{yyyy-mm}``, month by month, newest first, visiting
  only months that have a ``FEEDMONTHS`` marker; title is a filter.

A date range is a sort-key ``BETWEEN`` in every strategy. A page reads one match more
than it returns (the look-ahead that decides whether a next page exists); the
look-ahead's sort key (``{created_at}#{image_id}``) is the cursor, and the next page
starts there, inclusive, as the upper end of the range. So a page can stop in the middle
of a Query response, one cursor serves every strategy, and a full page-through reads
each item once plus one look-ahead per page.

Items read per item returned is the cost model (``make bench`` measures it): unfiltered
strategies read ``1 + 1/limit`` from one partition, and a little more over shards (the
merge's windows overshoot; under 1.2 at 16 shards); a filter (title, tags beyond the key) reads the
partition's items that fail it too, sizing each Query by the selectivity seen so far.
"""

from __future__ import annotations

import calendar
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.errors import (
    AWS_CALL_FAILURES,
    SERVER_FAULT_CODES,
    ImageNotFoundError,
    InvalidInputError,
    NotOwnerError,
    OutcomeUnknownError,
    WriteConflictError,
    may_have_taken_effect,
)
from chalicelib.keys import (
    FEED_MONTHS_PARTITION,
    LAYOUT_ATTRIBUTE,
    TAG_PREFIX,
    ShardLayout,
    feed_partition,
    feed_shard,
    image_key,
    membership_partitions,
    shard_keys,
    tags_query_partition,
    user_partition,
)
from chalicelib.listing import Budget, Read, Source, merge
from chalicelib.pagination import Position
from chalicelib.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    GSI2_NAME,
    GSI2_PARTITION_KEY,
    GSI2_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)
from chalicelib.validation import ListQuery, fold_text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

IMAGE_SORT_KEY = "META"
#: Sorts after every character of an image id, closing a ``BETWEEN`` on a timestamp.
_SORT_KEY_END = "~"
#: Sorts before every timestamp (key values may not be empty strings).
_SORT_KEY_START = "0000"
#: Most actions one ``TransactWriteItems`` may hold (DynamoDB's limit).
MAX_TRANSACTION_ITEMS = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class RenditionRecord:
    """One stored rendition: a WebP whose longer side is ``size`` pixels.

    ``width``/``height`` are pixels as displayed, ``size_bytes`` the object's size,
    ``s3_key`` where it is (``renditions/{image_id}/...``).
    """

    size: int
    width: int
    height: int
    content_type: str
    size_bytes: int
    s3_key: str


@dataclass(frozen=True)
class ImageRecord:
    """One image's metadata, as returned by the API.

    ``created_at``/``updated_at`` are ISO 8601 UTC with milliseconds and ``Z``;
    ``size_bytes`` is the stored original's size; ``width``/``height`` are pixels as
    displayed (EXIF orientation applied); ``sha256`` is the hex digest of the stored
    bytes; ``s3_key`` locates them in the bucket. ``frames`` is 1 for a still image;
    ``taken_at`` the EXIF date taken (ISO 8601) or None; ``placeholder`` a BlurHash and
    ``dominant_color`` ``#rrggbb``, both from the pixels; ``renditions`` smallest first.
    ``version`` is 1 at upload and bumped by every edit (an item written before versions
    existed reads as 1); the API's ``ETag`` is its quoted value.
    """

    image_id: str
    user_id: str
    title: str
    description: str
    tags: list[str]
    metadata: dict[str, str]
    filename: str
    content_type: str
    size_bytes: int
    width: int
    height: int
    sha256: str
    s3_key: str
    created_at: str
    updated_at: str
    frames: int = 1
    taken_at: str | None = None
    placeholder: str = ""
    dominant_color: str = ""
    renditions: list[RenditionRecord] = field(default_factory=list)
    version: int = 1
    #: The shard counts this image's keys were written with (read back from the image
    #: item; ``ShardLayout(1, 1)`` for items of the unsharded layout), or None for a
    #: record not yet written (the store's configured layout applies). Not part of the
    #: API's record.
    layout: ShardLayout | None = field(default=None, compare=False, repr=False)

    @property
    def object_keys(self) -> list[str]:
        """Every S3 key this image owns: the original, then each rendition."""
        return [self.s3_key, *(rendition.s3_key for rendition in self.renditions)]

    @property
    def sort_key(self) -> str:
        """``{created_at}#{image_id}``: the position of this image in every listing."""
        return f"{self.created_at}#{self.image_id}"

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object the API returns."""
        record = asdict(self)
        del record["layout"]
        return record


_SWEEP_CURSOR_KEY = {PARTITION_KEY: "SWEEP", SORT_KEY: "CURSOR"}


@dataclass(frozen=True)
class TableItem:
    """One item of a sweep's Scan, classified by its key.

    ``kind`` is ``image``, ``membership``, ``upload`` or ``other`` (feed-month markers,
    the sweep's cursor); ``record``/``upload`` are set for those kinds; ``image_id`` for
    images and memberships; ``created_at`` is the item's creation time (ISO 8601), when
    it has one.
    """

    kind: str
    pk: str
    sk: str
    image_id: str | None = None
    created_at: str | None = None
    record: ImageRecord | None = None
    upload: UploadRecord | None = None


def _table_item(item: dict[str, Any]) -> TableItem:
    pk, sk = str(item[PARTITION_KEY]), str(item[SORT_KEY])
    if pk.startswith("IMAGE#") and sk == IMAGE_SORT_KEY:
        record = _record(item)
        return TableItem("image", pk, sk, record.image_id, record.created_at, record=record)
    if pk.startswith(TAG_PREFIX):
        created_at, _, image_id = sk.rpartition("#")
        return TableItem("membership", pk, sk, str(item.get("image_id") or image_id), created_at)
    if pk.startswith(UPLOAD_PARTITION_PREFIX):
        upload = _upload(item)
        return TableItem("upload", pk, sk, upload.image_id, upload.created_at, upload=upload)
    return TableItem("other", pk, sk)


#: Statuses of a direct upload's item (``GET /uploads/{id}`` also reports ``expired``
#: for a pending upload past ``expires_at``).
UPLOAD_STATUSES = ("pending", "ready", "rejected", "expired")
UPLOAD_PARTITION_PREFIX = "UPLOAD#"
#: The upload item's processing lease: who holds it, and until when (epoch seconds).
_LEASE_ATTRIBUTES = {"holder": "lease_holder", "expires": "lease_expires"}
_LEASE_NAMES = {"#holder": _LEASE_ATTRIBUTES["holder"], "#lease": _LEASE_ATTRIBUTES["expires"]}


@dataclass(frozen=True)
class UploadRecord:
    """A direct upload (``POST /uploads``): the image's fields, validated when it was
    started, and where it stands.

    ``content_type``, ``size_bytes`` (bytes) and ``sha256`` (hex) are what the client
    declared, or None; ``status`` is one of :data:`UPLOAD_STATUSES`; ``error`` is the
    rejection ``{"Code", "Message"}``; ``created_at``/``expires_at`` are ISO 8601 UTC.
    """

    upload_id: str
    image_id: str
    user_id: str
    title: str
    description: str
    tags: list[str]
    metadata: dict[str, str]
    filename: str | None
    content_type: str | None
    size_bytes: int | None
    sha256: str | None
    status: str
    created_at: str
    expires_at: str
    error: dict[str, str] | None = None
    lease_holder: str | None = None
    lease_expires: int | None = None

    def lease_held(self, now_epoch: int) -> bool:
        """Whether a processing lease is live at ``now_epoch`` (seconds): someone took the
        work (:meth:`ImageMetadataStore.take_upload_lease`) and its lease has not expired."""
        return self.lease_expires is not None and now_epoch < self.lease_expires


@dataclass
class ListPage:
    """One page of a listing: ``next`` is where the next page starts, when more remain."""

    records: list[ImageRecord]
    next: Position | None = None


class ImageMetadataStore:
    """The metadata table.

    Args:
        dynamodb: boto3 DynamoDB client.
        table_name: table name (``TABLE_NAME``).
        layout: shard counts new images are written with (``FEED_SHARDS``,
            ``TAG_SHARDS``), and that listings read.
    """

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, layout: ShardLayout | None = None
    ) -> None:
        self._dynamodb = dynamodb
        self.table_name = table_name
        self.layout = layout or ShardLayout()
        self._months_marked: set[str] = set()
        self._attempts = _AttemptLog()
        # Every attempt of a transaction (and of the PutItem that starts an upload)
        # passes here, inside botocore's retry loop: a lost answer that a later
        # attempt's error answer would hide is still seen.
        for operation in ("TransactWriteItems", "PutItem"):
            dynamodb.meta.events.register(
                f"needs-retry.dynamodb.{operation}",
                self._attempts.note,
                unique_id=f"image-metadata-attempts-{operation}-{id(self)}",
            )

    # --- writes ---------------------------------------------------------------------

    def put_image(self, record: ImageRecord, upload_id: str | None = None) -> None:
        """Write the image item and its membership items (one per tag, one per pair of
        tags, each in its shard: :meth:`membership_items`) in one transaction: at most
        1 + 10 + 45 = 56 items, under DynamoDB's 100. A record without a ``layout`` is
        written with the store's.

        Every item is conditioned on ``attribute_not_exists(pk)``, so nothing is
        overwritten. With ``upload_id``, the same transaction marks that direct upload
        ``ready`` on condition that it is still ``pending``: one upload commits one
        image, whoever (event, ``complete``, sweep) gets there first. The feed's month
        marker is written first (:meth:`_mark_month`).

        Raises:
            WriteConflictError: an item with the same key already exists, or the upload
                is no longer pending; nothing was written.
            OutcomeUnknownError: an attempt's answer was lost (even if botocore's
                retries then got an error answer): the transaction may commit.
            botocore.exceptions.ClientError: any other DynamoDB failure; nothing of
                the image is written then.
        """
        self._mark_month(record.created_at[:7])
        condition = f"attribute_not_exists({PARTITION_KEY})"
        layout = record.layout or self.layout
        items = [image_item(record, layout), *membership_items(record, layout)]
        writes: list[Any] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": _serialize(item),
                    "ConditionExpression": condition,
                }
            }
            for item in items
        ]
        if upload_id is not None:
            writes.append({"Update": self._finish_upload_update(upload_id, "ready", None)})
        self._attempts.maybe_applied = False
        try:
            self._dynamodb.transact_write_items(TransactItems=writes)
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if _condition_failed(exc.response):
                raise WriteConflictError(
                    f"image_id: {record.image_id} already exists or its upload is not pending"
                ) from None
            if self._attempts.maybe_applied:
                raise OutcomeUnknownError(record.image_id) from exc
            raise
        except AWS_CALL_FAILURES as exc:
            if self._attempts.maybe_applied or may_have_taken_effect(exc):
                raise OutcomeUnknownError(record.image_id) from exc
            raise

    # --- direct uploads -------------------------------------------------------------

    def put_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        """Write a new pending upload item, with ``expires_at_epoch`` (seconds) as its
        TimeToLive, on condition that no item has its key.

        Idempotent: when the condition fails because the item is this very upload (an
        earlier attempt, inside botocore's retries or a call before, was applied but its
        answer lost), the write is done, not a conflict.

        Raises:
            WriteConflictError: another upload with this id exists.
            OutcomeUnknownError: an attempt's answer was lost or DynamoDB failed while
                handling it (even if a later attempt got an error answer): the item may
                exist, now or later.
            botocore.exceptions.ClientError: any other DynamoDB failure; nothing was
                written.
        """
        fields = {
            name: value
            for name, value in asdict(upload).items()
            if name not in _LEASE_ATTRIBUTES.values()
        }
        item = {**_upload_key(upload.upload_id), **fields, TTL_ATTRIBUTE: expires_at_epoch}
        self._attempts.maybe_applied = False
        try:
            self._dynamodb.put_item(
                TableName=self.table_name,
                Item=_serialize(item),
                ConditionExpression=f"attribute_not_exists({PARTITION_KEY})",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            try:
                stored = self.get_upload(upload.upload_id)
            except AWS_CALL_FAILURES as exc:  # an item exists: maybe this one
                raise OutcomeUnknownError(upload.upload_id) from exc
            if stored == upload:
                return  # this upload's own write, applied by an attempt whose answer was lost
            raise WriteConflictError(f"upload_id: {upload.upload_id} already exists") from None
        except AWS_CALL_FAILURES as exc:
            if self._attempts.maybe_applied or may_have_taken_effect(exc):
                raise OutcomeUnknownError(upload.upload_id) from exc
            raise

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        """The upload ``upload_id``, or None (strongly consistent read)."""
        response = self._dynamodb.get_item(
            TableName=self.table_name, Key=_serialize(_upload_key(upload_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else _upload(_deserialize(item))

    def finish_upload(self, upload_id: str, status: str, error: dict[str, str] | None) -> bool:
        """Move a pending upload to ``status`` (``rejected`` with ``error`` ``{"Code",
        "Message"}``, or ``expired``) on condition that it is still pending.

        Returns:
            Whether it moved (False: it was no longer pending, or is gone).

        Raises:
            botocore.exceptions.ClientError: any other DynamoDB failure.
        """
        try:
            self._dynamodb.update_item(**self._finish_upload_update(upload_id, status, error))
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def take_upload_lease(
        self, upload_id: str, holder: str, now_epoch: int, until_epoch: int
    ) -> bool:
        """Claim the processing of a pending upload for ``holder`` until ``until_epoch``
        (seconds since the epoch), on condition that it is pending and nobody holds a
        live lease (none, or one that expired at or before ``now_epoch``: its holder
        died). The pattern of Powertools' idempotency records, on the upload item.

        Returns:
            Whether this write took the lease (False: the upload is not pending, is
            gone, or another holder's lease is live; or this holder's own earlier
            write whose answer was lost took it: the caller re-reads and compares).

        Raises:
            botocore.exceptions.ClientError, BotoCoreError: any other DynamoDB failure;
                the write may have been applied when the answer was lost.
        """
        try:
            self._dynamodb.update_item(
                TableName=self.table_name,
                Key=_serialize(_upload_key(upload_id)),
                UpdateExpression="SET #holder = :holder, #lease = :until",
                ConditionExpression=(
                    "#status = :pending AND (attribute_not_exists(#lease) OR #lease <= :now)"
                ),
                ExpressionAttributeNames={"#status": "status", **_LEASE_NAMES},
                ExpressionAttributeValues=_serialize(
                    {
                        ":pending": "pending",
                        ":holder": holder,
                        ":until": until_epoch,
                        ":now": now_epoch,
                    }
                ),
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_upload_lease(self, upload_id: str, holder: str) -> None:
        """Give the lease back (``holder`` failed and stops): the next arrival may take
        the work at once instead of after the expiry. Does nothing when ``holder`` no
        longer holds it.

        Raises:
            botocore.exceptions.ClientError, BotoCoreError: any other DynamoDB failure.
        """
        try:
            self._dynamodb.update_item(
                TableName=self.table_name,
                Key=_serialize(_upload_key(upload_id)),
                UpdateExpression="REMOVE #holder, #lease",
                ConditionExpression="#holder = :holder",
                ExpressionAttributeNames=_LEASE_NAMES,
                ExpressionAttributeValues=_serialize({":holder": holder}),
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return

    def _finish_upload_update(
        self, upload_id: str, status: str, error: dict[str, str] | None
    ) -> dict[str, Any]:
        """Move the upload out of pending and drop its lease: its work is over."""
        values: dict[str, Any] = {":status": status, ":pending": "pending"}
        names = {"#status": "status", **_LEASE_NAMES}
        expression = "SET #status = :status"
        if error is not None:
            expression += ", #error = :error"
            values[":error"] = error
            names["#error"] = "error"
        return {
            "TableName": self.table_name,
            "Key": _serialize(_upload_key(upload_id)),
            "UpdateExpression": f"{expression} REMOVE #holder, #lease",
            "ConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _serialize(values),
        }

    def delete_image(self, record: ImageRecord, owner: str | None) -> None:
        """Delete the image item and all its membership items in one transaction.

        Args:
            record: the image as last read; the delete only happens if the image is
                still at ``record.version`` (so the membership items deleted are the
                ones it has: an edit that committed since moved them).
            owner: when given, the delete only happens if the stored ``user_id`` is
                still this one (checked by DynamoDB, not just by the caller).

        Raises:
            ImageNotFoundError: the image was deleted meanwhile.
            NotOwnerError: the stored owner is not ``owner``.
            WriteConflictError: the image was edited since ``record`` was read; nothing
                was deleted (read it again).
        """
        condition = f"attribute_exists({PARTITION_KEY}) AND {_version_condition(record)}"
        values: dict[str, Any] = {":version": record.version}
        if owner is not None:
            condition += " AND user_id = :owner"
            values[":owner"] = owner
        image_delete: Any = {
            "TableName": self.table_name,
            "Key": _serialize(_image_key(record.image_id)),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": _serialize(values),
        }
        membership_deletes: list[Any] = [
            {"Delete": {"TableName": self.table_name, "Key": _serialize(key)}}
            for key in membership_keys(record, record.layout or self.layout)
        ]
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[{"Delete": image_delete}, *membership_deletes]
            )
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if not _condition_failed(exc.response):
                raise
            current = self.get_image(record.image_id)
            if current is None:
                raise ImageNotFoundError(record.image_id) from None
            if owner is not None and current.user_id != owner:
                raise NotOwnerError("only the owner may delete this image") from None
            raise WriteConflictError(
                f"image_id: {record.image_id} was edited while it was deleted"
            ) from None

    def update_image(self, current: ImageRecord, edited: ImageRecord, owner: str) -> None:
        """Replace ``current`` by ``edited`` (same image, owner and sort key; its
        ``version`` one more) in one transaction: the image item (its GSI copies
        follow), a Put of every membership item of ``edited`` (conditioned on existing
        when ``current`` has it too, on not existing otherwise) and a Delete of each
        membership item of ``current`` that ``edited`` does not have. The image item's
        condition is that it exists, belongs to ``owner`` and is still at
        ``current.version`` (an item without ``version`` counts as 1).

        Raises:
            InvalidInputError: (``tags``) the edit touches more items than one
                transaction holds (100); nothing was written.
            WriteConflictError: a condition failed (the image changed, moved to another
                owner or is gone; or a concurrent transaction held an item); nothing
                was written. The caller re-reads to tell which.
            OutcomeUnknownError: an attempt's answer was lost: the edit may commit.
            botocore.exceptions.ClientError: any other DynamoDB failure (nothing written).
        """
        names = {"#pk": PARTITION_KEY, "#owner": "user_id", "#version": "version"}
        layout = current.layout or self.layout  # the image stays in the layout it was written with
        version_condition = _version_condition(current)
        image_put = {
            "TableName": self.table_name,
            "Item": _serialize(image_item(edited, layout)),
            "ConditionExpression": (
                f"attribute_exists(#pk) AND #owner = :owner AND {version_condition}"
            ),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _serialize({":owner": owner, ":version": current.version}),
        }
        old_keys = {(key[PARTITION_KEY], key[SORT_KEY]) for key in membership_keys(current, layout)}
        new_items = membership_items(edited, layout)
        new_keys = {(str(item[PARTITION_KEY]), str(item[SORT_KEY])) for item in new_items}
        writes: list[Any] = [{"Put": image_put}]
        for item in new_items:
            kept = (str(item[PARTITION_KEY]), str(item[SORT_KEY])) in old_keys
            condition = "attribute_exists(#pk)" if kept else "attribute_not_exists(#pk)"
            writes.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": _serialize(item),
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    }
                }
            )
        for pk, sk in sorted(old_keys - new_keys):
            writes.append(
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": _serialize({PARTITION_KEY: pk, SORT_KEY: sk}),
                    }
                }
            )
        if len(writes) > MAX_TRANSACTION_ITEMS:
            raise InvalidInputError(
                "tags",
                f"this change rewrites {len(writes)} items, more than one transaction "
                f"holds ({MAX_TRANSACTION_ITEMS}): keep more of the current tags, or "
                "make it in two edits",
            )
        self._attempts.maybe_applied = False
        try:
            self._dynamodb.transact_write_items(TransactItems=writes)
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if self._attempts.maybe_applied:
                raise OutcomeUnknownError(current.image_id) from exc
            reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons", [])}
            if reasons & {"ConditionalCheckFailed", "TransactionConflict"}:
                raise WriteConflictError(
                    f"image_id: {current.image_id} changed while it was edited"
                ) from None
            raise
        except AWS_CALL_FAILURES as exc:
            if self._attempts.maybe_applied or may_have_taken_effect(exc):
                raise OutcomeUnknownError(current.image_id) from exc
            raise

    def _mark_month(self, month: str) -> None:
        """Record that ``month`` (``yyyy-mm``) holds images, once per process and month.

        Marks the next month too, ahead of time: every process that uploads in a month
        has marked the next one before it begins, so the first second of a month does
        not bring one marker write from every running process to one partition. Each
        marker is a conditional put (an existing marker is not rewritten; a month marked
        in advance that gets no image is an empty Query for the feed).
        """
        if month in self._months_marked:
            return
        for marked in (month, _next_month(month)):
            with contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
                self._dynamodb.put_item(
                    TableName=self.table_name,
                    Item=_serialize({PARTITION_KEY: FEED_MONTHS_PARTITION, SORT_KEY: marked}),
                    ConditionExpression=f"attribute_not_exists({PARTITION_KEY})",
                )
        self._months_marked.add(month)

    # --- reads ----------------------------------------------------------------------

    def get_image(self, image_id: str) -> ImageRecord | None:
        """The image with ``image_id``, or None (strongly consistent read)."""
        response = self._dynamodb.get_item(
            TableName=self.table_name, Key=_serialize(_image_key(image_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else _record(_deserialize(item))

    def list_images(self, query: ListQuery, start: Position | None = None) -> ListPage:
        """A page of at most ``query.limit`` images, newest first, from ``start`` on.

        Args:
            query: the validated filters and page size.
            start: where the previous page said this one starts (the sort key of its
                first image, inclusive, and the density of matches seen), or None for
                the first page.

        Reads one match more than the page (the look-ahead), so a page is full unless
        the result set is exhausted, and ``cursor`` is set only when more remain.
        """
        budget = Budget(wanted=query.limit + 1, density=None if start is None else start.density)
        cursor = None if start is None else start.cursor
        matches = list(islice(self._matches(query, cursor, budget), query.limit + 1))
        records = [_record(item) for item in matches[: query.limit]]
        if len(matches) <= query.limit:
            return ListPage(records=records)
        return ListPage(records, Position(_record(matches[-1]).sort_key, budget.density))

    def _matches(
        self, query: ListQuery, start: str | None, budget: Budget
    ) -> Iterator[dict[str, Any]]:
        filters = _filters(query)
        low = query.created_from or _SORT_KEY_START
        high = (query.created_to or "9999") + _SORT_KEY_END
        if start is not None:
            high = min(high, start)

        def run(source: Source, low: str, high: str, limit: int) -> Read:
            return self._query(source, filters, low, high, limit)

        filtered = bool(filters.clauses)
        for sources, month in self._partitions(query, low[:7], high, start):
            if month is None:
                yield from merge(sources, low, high, budget, run, filtered=filtered)
                continue
            # A month's shards hold only that month: bounding the merge to it lets the
            # merge size its windows from the month's own span, not from the page's.
            first, last = _month_bounds(month)
            bounded_low, bounded_high = max(low, first), min(high, last)
            yield from merge(sources, bounded_low, bounded_high, budget, run, filtered=filtered)

    def _partitions(
        self, query: ListQuery, first_month: str, high: str, start: str | None
    ) -> Iterator[tuple[list[Source], str | None]]:
        """The shards of each partition to Query, in order, each with the month
        (``yyyy-mm``) it holds when it is a feed month: the user's GSI1 partition, else
        the tag pair's or the tag's shards, else each GSI2 month's shards from ``high``'s
        month back to ``first_month``.

        A resumed feed starts in ``start``'s month without reading a marker (its
        look-ahead image is there); older months come from markers, one at a time.
        """
        if query.user_id is not None:
            user = user_partition(query.user_id)
            yield [Source(GSI1_NAME, GSI1_PARTITION_KEY, user, GSI1_SORT_KEY)], None
            return
        if query.tags:
            base = tags_query_partition(query.tags)
            keys = shard_keys(base, self.layout.tag)
            yield [Source(None, PARTITION_KEY, key, SORT_KEY) for key in keys], None
            return
        last_month = high[:7]
        if start is not None and start[:7] == last_month:
            yield self._feed_sources(last_month), last_month
            last_month = _previous_month(last_month)
        for month in self._months(first_month, last_month):
            yield self._feed_sources(month), month

    def _feed_sources(self, month: str) -> list[Source]:
        base = feed_partition(month)
        return [
            Source(GSI2_NAME, GSI2_PARTITION_KEY, key, GSI2_SORT_KEY)
            for key in shard_keys(base, self.layout.feed)
        ]

    def _months(self, first: str, last: str) -> Iterator[str]:
        """Months (``yyyy-mm``) that hold images, from ``last`` back to ``first``.

        Read one marker per Query, lazily: a page that fills inside a month reads no
        more markers than that.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :first AND :last",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": _serialize(
                {":pk": FEED_MONTHS_PARTITION, ":first": first, ":last": last}
            ),
            "ScanIndexForward": False,
            "Limit": 1,
        }
        while True:
            response = self._dynamodb.query(**request)
            for item in response.get("Items", []):
                yield _deserialize(item)[SORT_KEY]
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def _query(self, source: Source, filters: _Filter, low: str, high: str, limit: int) -> Read:
        """One Query of ``source``: matching items with ``low <= sort key <= high``,
        newest first, reading at most ``limit`` items."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :low AND :high",
            "ExpressionAttributeNames": {
                "#pk": source.partition_name,
                "#sk": source.sort_key,
                **filters.names,
            },
            "ExpressionAttributeValues": _serialize(
                {":pk": source.partition_value, ":low": low, ":high": high, **filters.values}
            ),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if source.index is not None:
            request["IndexName"] = source.index
        if filters.clauses:
            request["FilterExpression"] = " AND ".join(filters.clauses)
        response = self._dynamodb.query(**request)
        items = response.get("Items", [])
        last_key = response.get("LastEvaluatedKey")
        return Read(
            items=[item for item in map(_deserialize, items) if filters.keeps(item)],
            scanned=int(response.get("ScannedCount", len(items))),
            last=None if not last_key else str(_deserialize(last_key)[source.sort_key]),
        )

    # --- the sweep: Scans, never a request path --------------------------------------

    def scan_slice(
        self, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[TableItem], dict[str, Any] | None]:
        """One bounded page of a consistent Scan of the whole table (the sweep only).

        Args:
            start: the previous slice's resume key, or None to start.
            limit: most items to read (DynamoDB's ``Limit``).

        Returns:
            ``(items, resume)``: each item as a :class:`TableItem`; ``resume`` is None
            once the Scan is done. ``resume`` is plain JSON (strings), so it can be kept
            in the sweep's cursor.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "Limit": limit,
        }
        if start:
            request["ExclusiveStartKey"] = _serialize(start)
        response = self._dynamodb.scan(**request)
        items = [_table_item(_deserialize(raw)) for raw in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, None if not last else {k: str(v) for k, v in _deserialize(last).items()}

    def get_sweep_cursor(self) -> dict[str, Any] | None:
        """Where the scheduled sweep stopped: ``{"phase", "position"}``, or None."""
        response = self._dynamodb.get_item(
            TableName=self.table_name, Key=_serialize(_SWEEP_CURSOR_KEY), ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        cursor = _deserialize(item)
        return {"phase": cursor.get("phase"), "position": cursor.get("position")}

    def put_sweep_cursor(self, cursor: dict[str, Any] | None) -> None:
        """Save (or, with None, clear) where the scheduled sweep resumes."""
        if cursor is None:
            self._dynamodb.delete_item(TableName=self.table_name, Key=_serialize(_SWEEP_CURSOR_KEY))
            return
        self._dynamodb.put_item(
            TableName=self.table_name, Item=_serialize({**_SWEEP_CURSOR_KEY, **cursor})
        )

    def delete_orphan_membership(self, membership: dict[str, str]) -> bool:
        """Delete one membership item if its image item does not exist.

        One transaction: a ``ConditionCheck`` that the image item is absent, and the
        ``Delete``; so a membership of a live image is never removed, whatever raced.

        Args:
            membership: ``{"pk", "sk", "image_id"}`` of a membership item.

        Returns:
            Whether it was deleted (False: its image exists).

        Raises:
            botocore.exceptions.ClientError: any other DynamoDB failure.
        """
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table_name,
                            "Key": _serialize(_image_key(membership["image_id"])),
                            "ConditionExpression": f"attribute_not_exists({PARTITION_KEY})",
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": _serialize(
                                {PARTITION_KEY: membership["pk"], SORT_KEY: membership["sk"]}
                            ),
                        }
                    },
                ]
            )
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if _condition_failed(exc.response):
                return False
            raise
        return True

    def check(self) -> None:
        """Raise the client's error if the table does not answer (for ``/health``)."""
        self._dynamodb.describe_table(TableName=self.table_name)


class _AttemptLog(threading.local):
    """Per thread: whether an attempt of the current transaction lost its answer."""

    maybe_applied: bool = False

    def note(
        self,
        caught_exception: BaseException | None = None,
        response: tuple[Any, dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        """botocore ``needs-retry`` hook: record an attempt that got no answer, or an
        answer saying the service failed while handling it (a 500)."""
        if caught_exception is not None and may_have_taken_effect(caught_exception):
            self.maybe_applied = True
        if response is not None:
            code = (response[1] or {}).get("Error", {}).get("Code")
            if code in SERVER_FAULT_CODES:
                self.maybe_applied = True


def _previous_month(month: str) -> str:
    """``yyyy-mm`` of the month before ``month``."""
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def _version_condition(record: ImageRecord) -> str:
    """The condition that the image item is still at ``record.version`` (``#version``
    and ``:version`` to be bound); an item written before versions existed is at 1."""
    if record.version == 1:
        return "(attribute_not_exists(#version) OR #version = :version)"
    return "#version = :version"


def _item_key(item: dict[str, Any]) -> dict[str, str]:
    return {PARTITION_KEY: str(item[PARTITION_KEY]), SORT_KEY: str(item[SORT_KEY])}


def _month_bounds(month: str) -> tuple[str, str]:
    """The first and last sort keys a month (``yyyy-mm``) can hold, as bounds: its first
    millisecond, and its last followed by ``~`` (after every image id)."""
    last_day = calendar.monthrange(int(month[:4]), int(month[5:7]))[1]
    return f"{month}-01T00:00:00.000Z", f"{month}-{last_day:02d}T23:59:59.999Z{_SORT_KEY_END}"


def _next_month(month: str) -> str:
    """``yyyy-mm`` of the month after ``month``."""
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + 1:04d}-01" if number == 12 else f"{year:04d}-{number + 1:02d}"


def _image_key(image_id: str) -> dict[str, str]:
    return {PARTITION_KEY: image_key(image_id), SORT_KEY: IMAGE_SORT_KEY}


def image_item(record: ImageRecord, layout: ShardLayout) -> dict[str, Any]:
    """The image item of ``record`` written with ``layout``: the record's listing
    attributes, GSI1 ``USER#{user_id}``, GSI2 the feed month's shard, and the layout
    itself (:data:`~chalicelib.keys.LAYOUT_ATTRIBUTE`)."""
    return {
        **_image_key(record.image_id),
        GSI1_PARTITION_KEY: user_partition(record.user_id),
        GSI1_SORT_KEY: record.sort_key,
        GSI2_PARTITION_KEY: feed_shard(record.image_id, record.created_at, layout),
        GSI2_SORT_KEY: record.sort_key,
        LAYOUT_ATTRIBUTE: layout.to_item(),
        **_listing_attributes(record),
    }


def membership_keys(record: ImageRecord, layout: ShardLayout) -> list[dict[str, str]]:
    """``{pk, sk}`` of every membership item of ``record`` written with ``layout``
    (:func:`~chalicelib.keys.membership_partitions`): the one rule for writing,
    deleting and moving them."""
    return [
        {PARTITION_KEY: partition, SORT_KEY: record.sort_key}
        for partition in membership_partitions(record.image_id, record.tags, layout)
    ]


def membership_items(record: ImageRecord, layout: ShardLayout) -> list[dict[str, Any]]:
    """Every membership item of ``record`` written with ``layout``: its key and every
    field a listing returns (a listing by tag reads one item per image returned)."""
    attributes = _listing_attributes(record)
    return [{**key, **attributes} for key in membership_keys(record, layout)]


def _upload_key(upload_id: str) -> dict[str, str]:
    return {PARTITION_KEY: f"{UPLOAD_PARTITION_PREFIX}{upload_id}", SORT_KEY: IMAGE_SORT_KEY}


def _upload(item: dict[str, Any]) -> UploadRecord:
    size = item.get("size_bytes")
    error = item.get("error")
    return UploadRecord(
        upload_id=item["upload_id"],
        image_id=item["image_id"],
        user_id=item["user_id"],
        title=item.get("title", ""),
        description=item.get("description", ""),
        tags=list(item.get("tags", [])),
        metadata=dict(item.get("metadata", {})),
        filename=item.get("filename"),
        content_type=item.get("content_type"),
        size_bytes=None if size is None else int(size),
        sha256=item.get("sha256"),
        status=item["status"],
        created_at=item["created_at"],
        expires_at=item["expires_at"],
        error=None if error is None else {str(k): str(v) for k, v in error.items()},
        lease_holder=item.get("lease_holder"),
        lease_expires=None if item.get("lease_expires") is None else int(item["lease_expires"]),
    )


#: The folded title (``validation.fold_text``) the title filter reads, on image and
#: membership items. Items written before it existed have none: the filter lets them
#: through and :meth:`_Filter.keeps` folds their ``title`` instead (no migration).
TITLE_FOLDED = "title_folded"


def _listing_attributes(record: ImageRecord) -> dict[str, Any]:
    """Everything a listing returns, plus the folded title the title filter reads."""
    return {**record.to_dict(), TITLE_FOLDED: fold_text(record.title)}


@dataclass
class _Filter:
    """A FilterExpression's clauses (joined with AND), attribute names and values, and
    the folded ``title`` searched for (None: any)."""

    clauses: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    title: str | None = None

    def keeps(self, item: dict[str, Any]) -> bool:
        """Whether an item DynamoDB's filter let through matches: only an item without
        :data:`TITLE_FOLDED` (written before it) still needs its title folded here."""
        if self.title is None or TITLE_FOLDED in item:
            return True
        return self.title in fold_text(str(item.get("title", "")))


def _filters(query: ListQuery) -> _Filter:
    """The filters that the queried partition's key does not already cover."""
    result = _Filter()
    tags = query.tags if query.user_id is not None else tuple(sorted(query.tags))[2:]
    for number, tag in enumerate(tags):
        result.clauses.append(f"contains(#tags, :tag{number})")
        result.names["#tags"] = "tags"
        result.values[f":tag{number}"] = tag
    if query.title:
        result.clauses.append(
            "(contains(#title_folded, :title) OR attribute_not_exists(#title_folded))"
        )
        result.names["#title_folded"] = TITLE_FOLDED
        result.values[":title"] = query.title
        result.title = query.title
    return result


def _record(item: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        image_id=item["image_id"],
        user_id=item["user_id"],
        title=item.get("title", ""),
        description=item.get("description", ""),
        tags=list(item.get("tags", [])),
        metadata=dict(item.get("metadata", {})),
        filename=item["filename"],
        content_type=item["content_type"],
        size_bytes=int(item["size_bytes"]),
        width=int(item["width"]),
        height=int(item["height"]),
        sha256=item["sha256"],
        s3_key=item["s3_key"],
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        frames=int(item.get("frames", 1)),
        taken_at=item.get("taken_at"),
        placeholder=str(item.get("placeholder", "")),
        dominant_color=str(item.get("dominant_color", "")),
        version=int(item.get("version", 1)),
        layout=ShardLayout.from_item(item.get(LAYOUT_ATTRIBUTE)),
        renditions=[
            RenditionRecord(
                size=int(rendition["size"]),
                width=int(rendition["width"]),
                height=int(rendition["height"]),
                content_type=str(rendition["content_type"]),
                size_bytes=int(rendition["size_bytes"]),
                s3_key=str(rendition["s3_key"]),
            )
            for rendition in item.get("renditions", [])
        ],
    )


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def _condition_failed(response: Any) -> bool:
    reasons = response.get("CancellationReasons", [])
    return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)
