"""DynamoDB metadata: image records, tag memberships and listings, in one table.

Why a wrapper: the single-table layout (see ``chalicelib/schema.py``) means one image is
several items (the image, one per tag, a feed-month marker) that must be written and
deleted together, and every listing must be a Query on a partition that holds only
matching items. This module is the only code that knows the key formats.

Listing strategies (no request path ever Scans):

- ``user_id`` given: Query GSI1 ``USER#{user_id}``; tags and title are filters.
- else tags given: Query ``TAG#{first tag}``; other tags and title are filters.
- else: Query GSI2 ``FEED#{yyyy-mm}`` month by month, newest first, visiting only months
  that have a ``FEEDMONTHS`` marker; title is a filter.

A date range is a sort-key ``BETWEEN`` in every strategy. Pages are resumed from the
sort key of the last item returned (``{created_at}#{image_id}``), which becomes the
upper end of the range, never from DynamoDB's ``LastEvaluatedKey``: so a page can stop
in the middle of a Query response, and one cursor serves every strategy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.errors import ImageNotFoundError, NotOwnerError, WriteConflictError
from chalicelib.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    GSI2_NAME,
    GSI2_PARTITION_KEY,
    GSI2_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
)
from chalicelib.validation import ListQuery

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

IMAGE_SORT_KEY = "META"
FEED_MONTHS_PARTITION = "FEEDMONTHS"
#: Sorts after every character of an image id, closing a ``BETWEEN`` on a timestamp.
_SORT_KEY_END = "~"
#: Sorts before every timestamp (key values may not be empty strings).
_SORT_KEY_START = "0000"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class ImageRecord:
    """One image's metadata, as returned by the API.

    ``created_at``/``updated_at`` are ISO 8601 UTC with milliseconds and ``Z``;
    ``size_bytes`` is the stored object's size; ``width``/``height`` are pixels;
    ``sha256`` is the hex digest of the bytes; ``s3_key`` locates them in the bucket.
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

    @property
    def sort_key(self) -> str:
        """``{created_at}#{image_id}``: the position of this image in every listing."""
        return f"{self.created_at}#{self.image_id}"

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object the API returns."""
        return asdict(self)


@dataclass
class ListPage:
    """One page of a listing: ``cursor`` is the last item's sort key when more remain."""

    records: list[ImageRecord]
    cursor: str | None = None


class ImageMetadataStore:
    """The metadata table.

    Args:
        dynamodb: boto3 DynamoDB client.
        table_name: table name (``TABLE_NAME``).
    """

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self.table_name = table_name
        self._months_marked: set[str] = set()

    # --- writes ---------------------------------------------------------------------

    def put_image(self, record: ImageRecord) -> None:
        """Write the image item and one item per tag in one transaction.

        Every item is conditioned on ``attribute_not_exists(pk)``, so nothing is
        overwritten. The month marker for the feed is written first (idempotent).

        Raises:
            WriteConflictError: an item with the same key already exists.
            botocore.exceptions.ClientError: any other DynamoDB failure; nothing of
                the image is written then.
        """
        self._mark_month(record.created_at[:7])
        condition = f"attribute_not_exists({PARTITION_KEY})"
        items = [self._image_item(record)] + [self._tag_item(record, t) for t in record.tags]
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _serialize(item),
                            "ConditionExpression": condition,
                        }
                    }
                    for item in items
                ]
            )
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if _condition_failed(exc.response):
                raise WriteConflictError(f"image_id: {record.image_id} already exists") from None
            raise

    def delete_image(self, record: ImageRecord, owner: str | None) -> None:
        """Delete the image item and all its tag items in one transaction.

        Args:
            record: the image as last read.
            owner: when given, the delete only happens if the stored ``user_id`` is
                still this one (checked by DynamoDB, not just by the caller).

        Raises:
            ImageNotFoundError: the image was deleted meanwhile.
            NotOwnerError: the stored owner is not ``owner``.
        """
        image_delete: Any = {
            "TableName": self.table_name,
            "Key": _serialize(_image_key(record.image_id)),
            "ConditionExpression": f"attribute_exists({PARTITION_KEY})",
        }
        if owner is not None:
            image_delete["ConditionExpression"] += " AND user_id = :owner"
            image_delete["ExpressionAttributeValues"] = {":owner": {"S": owner}}
        tag_deletes: list[Any] = [
            {
                "Delete": {
                    "TableName": self.table_name,
                    "Key": _serialize({PARTITION_KEY: f"TAG#{tag}", SORT_KEY: record.sort_key}),
                }
            }
            for tag in record.tags
        ]
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[{"Delete": image_delete}, *tag_deletes]
            )
        except self._dynamodb.exceptions.TransactionCanceledException as exc:
            if not _condition_failed(exc.response):
                raise
            current = self.get_image(record.image_id)
            if current is None:
                raise ImageNotFoundError(record.image_id) from None
            raise NotOwnerError("only the owner may delete this image") from None

    def _mark_month(self, month: str) -> None:
        """Record that ``month`` (``yyyy-mm``) holds images, once per process and month."""
        if month in self._months_marked:
            return
        self._dynamodb.put_item(
            TableName=self.table_name,
            Item=_serialize({PARTITION_KEY: FEED_MONTHS_PARTITION, SORT_KEY: month}),
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

    def list_images(self, query: ListQuery, after: str | None = None) -> ListPage:
        """A page of at most ``query.limit`` images, newest first, after ``after``.

        Reads one item more than the page to know whether another page exists, so a
        page is full unless the result set is exhausted.
        """
        budget = _Budget(wanted=query.limit + 1)
        matches = islice(self._matches(query, after, budget), query.limit + 1)
        records = [_record(item) for item in matches]
        more = len(records) > query.limit
        records = records[: query.limit]
        cursor = records[-1].sort_key if more and records else None
        return ListPage(records=records, cursor=cursor)

    def _matches(
        self, query: ListQuery, after: str | None, budget: _Budget
    ) -> Iterator[dict[str, Any]]:
        filters = _filters(query)
        low = query.created_from or _SORT_KEY_START
        high = (query.created_to or "9999") + _SORT_KEY_END
        if after is not None:
            high = min(high, after)
        for index, partition, sort_key in self._partitions(query, low[:7], high[:7]):
            yield from self._query(
                budget,
                filters,
                index=index,
                partition=partition,
                sort_key=sort_key,
                low=low,
                high=high,
                after=after,
            )

    def _partitions(
        self, query: ListQuery, first_month: str, last_month: str
    ) -> Iterator[tuple[str | None, tuple[str, str], str]]:
        """``(index, (partition key name, value), sort key name)`` to Query, in order:
        the user's GSI1 partition, else the first tag's partition, else the GSI2 month
        partitions from ``last_month`` back to ``first_month``."""
        if query.user_id is not None:
            yield GSI1_NAME, (GSI1_PARTITION_KEY, f"USER#{query.user_id}"), GSI1_SORT_KEY
        elif query.tags:
            yield None, (PARTITION_KEY, f"TAG#{query.tags[0]}"), SORT_KEY
        else:
            for month in self._months(first_month, last_month):
                yield GSI2_NAME, (GSI2_PARTITION_KEY, f"FEED#{month}"), GSI2_SORT_KEY

    def _months(self, first: str, last: str) -> Iterator[str]:
        """Months (``yyyy-mm``) that hold images, from ``last`` back to ``first``."""
        for item in self._query(
            _Budget(wanted=100),
            _Filter(),
            index=None,
            partition=(PARTITION_KEY, FEED_MONTHS_PARTITION),
            sort_key=SORT_KEY,
            low=first,
            high=last,
            after=None,
        ):
            yield item[SORT_KEY]

    def _query(
        self,
        budget: _Budget,
        filters: _Filter,
        *,
        index: str | None,
        partition: tuple[str, str],
        sort_key: str,
        low: str,
        high: str,
        after: str | None,
    ) -> Iterator[dict[str, Any]]:
        """Items of one partition with ``low <= sort key <= high``, newest first.

        ``after`` excludes the item at that sort key (the previous page's last one):
        the range's upper end is set to it and an equal key is skipped.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :low AND :high",
            "ExpressionAttributeNames": {"#pk": partition[0], "#sk": sort_key, **filters.names},
            "ExpressionAttributeValues": _serialize(
                {":pk": partition[1], ":low": low, ":high": high, **filters.values}
            ),
            "ScanIndexForward": False,
        }
        if index is not None:
            request["IndexName"] = index
        if filters.clauses:
            request["FilterExpression"] = " AND ".join(filters.clauses)
        while budget.wanted > 0:
            request["Limit"] = budget.query_limit(
                filtered=bool(filters.clauses), resuming=after is not None
            )
            response = self._dynamodb.query(**request)
            for raw in response.get("Items", []):
                item = _deserialize(raw)
                if after is None or item.get(sort_key) != after:
                    budget.wanted -= 1
                    yield item
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def scan_images(self) -> Iterator[ImageRecord]:
        """Every image record, by Scan: for the reconcile command only, never a request."""
        paginator = self._dynamodb.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table_name,
            FilterExpression="#sk = :meta",
            ExpressionAttributeNames={"#sk": SORT_KEY},
            ExpressionAttributeValues={":meta": {"S": IMAGE_SORT_KEY}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield _record(_deserialize(item))

    def check(self) -> None:
        """Raise the client's error if the table does not answer (for ``/health``)."""
        self._dynamodb.describe_table(TableName=self.table_name)

    # --- item layout ----------------------------------------------------------------

    def _image_item(self, record: ImageRecord) -> dict[str, Any]:
        return {
            **_image_key(record.image_id),
            GSI1_PARTITION_KEY: f"USER#{record.user_id}",
            GSI1_SORT_KEY: record.sort_key,
            GSI2_PARTITION_KEY: f"FEED#{record.created_at[:7]}",
            GSI2_SORT_KEY: record.sort_key,
            **_listing_attributes(record),
        }

    def _tag_item(self, record: ImageRecord, tag: str) -> dict[str, Any]:
        return {
            PARTITION_KEY: f"TAG#{tag}",
            SORT_KEY: record.sort_key,
            **_listing_attributes(record),
        }


@dataclass
class _Budget:
    """How many more matches one listing wants."""

    wanted: int

    def query_limit(self, filtered: bool, resuming: bool) -> int:
        """``Limit`` for the next Query: exactly what is still wanted (plus the cursor
        item, read again and skipped, when ``resuming``); with a filter, more, since some
        items read will not match."""
        wanted = self.wanted + int(resuming)
        return min(wanted * 4, 1000) if filtered else wanted


def _image_key(image_id: str) -> dict[str, str]:
    return {PARTITION_KEY: f"IMAGE#{image_id}", SORT_KEY: IMAGE_SORT_KEY}


def _listing_attributes(record: ImageRecord) -> dict[str, Any]:
    """Everything a listing returns, plus the lower-cased title the title filter reads."""
    return {**record.to_dict(), "title_lower": record.title.lower()}


@dataclass
class _Filter:
    """A FilterExpression's clauses (joined with AND), attribute names and values."""

    clauses: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _filters(query: ListQuery) -> _Filter:
    """The filters that the queried partition's key does not already cover."""
    result = _Filter()
    tags = query.tags if query.user_id is not None else query.tags[1:]
    for number, tag in enumerate(tags):
        result.clauses.append(f"contains(#tags, :tag{number})")
        result.names["#tags"] = "tags"
        result.values[f":tag{number}"] = tag
    if query.title:
        result.clauses.append("contains(#title_lower, :title)")
        result.names["#title_lower"] = "title_lower"
        result.values[":title"] = query.title
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
    )


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def _condition_failed(response: Any) -> bool:
    reasons = response.get("CancellationReasons", [])
    return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)
