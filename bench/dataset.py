"""The benchmark's data set: a seeded, skewed, realistic set of image records.

- users: ``user000`` … with Zipf-like weights (weight of rank r is ``1 / r``), so the
  most active user owns ~19 % of the images at 100 users;
- tags: ``tag00`` … with Zipf-like popularity, 1-5 distinct tags per image;
- titles: two or three words from a small vocabulary, ~7 % of them containing
  ``Sunset`` (the title search word, matched case-insensitively);
- ``created_at``: uniform over ``months`` months ending at :data:`END`.

Seeding goes through the project's metadata layer (``ImageMetadataStore.put_image``)
into the service's table, and puts one item per image into the baseline table that the
"common way" (Scan + filter) reads.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from chalicelib.keys import ShardLayout
from chalicelib.metadata import TITLE_FOLDED, ImageMetadataStore, ImageRecord
from chalicelib.storage import object_key
from chalicelib.validation import fold_text, format_timestamp

#: The newest possible ``created_at`` (exclusive).
END = datetime(2026, 11, 21, tzinfo=UTC)
#: The title search word; a title contains it (capitalised) with probability ~7 %.
SEARCH_WORD = "sunset"
_SEARCH_SHARE = 0.07
_ADJECTIVES = ("Golden", "Quiet", "Misty", "Bright", "Old", "Blue", "Late", "Wild", "Small")
_NOUNS = ("harbour", "forest", "street", "garden", "bridge", "market", "beach", "river", "cat")
_PLACES = ("in Lisbon", "at home", "from the hill", "near the station", "in spring", "")
_CAMERAS = ("X100V", "iPhone 15", "Pixel 8", "EOS R6", "A7 IV")
#: Items per BatchWriteItem call (DynamoDB's maximum).
_BATCH = 25


@dataclass(frozen=True)
class DatasetSpec:
    """Sizes of the data set: counts, and ``months`` of history ending at :data:`END`."""

    images: int = 10_000
    users: int = 100
    tags: int = 50
    months: int = 24
    seed: int = 42


def zipf_weights(count: int) -> list[float]:
    """Weights ``1/1, 1/2, …, 1/count`` (rank 1 is the most popular)."""
    return [1.0 / rank for rank in range(1, count + 1)]


def _months_before(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) - months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def generate(spec: DatasetSpec) -> list[ImageRecord]:
    """``spec.images`` records, deterministic for ``spec.seed``, in no particular order."""
    rng = random.Random(spec.seed)
    users = [f"user{number:03d}" for number in range(spec.users)]
    tags = [f"tag{number:02d}" for number in range(spec.tags)]
    user_weights = zipf_weights(spec.users)
    tag_weights = zipf_weights(spec.tags)
    start = _months_before(END, spec.months)
    span_ms = int((END - start).total_seconds() * 1000)
    records = []
    for number in range(spec.images):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        wanted = min(rng.randint(1, 5), spec.tags)
        chosen: list[str] = []
        while len(chosen) < wanted:
            tag = rng.choices(tags, tag_weights)[0]
            if tag not in chosen:
                chosen.append(tag)
        if rng.random() < _SEARCH_SHARE:
            title = f"{rng.choice(_ADJECTIVES)} Sunset {rng.choice(_PLACES)}".strip()
        else:
            title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_PLACES)}"
        created = format_timestamp(start + timedelta(milliseconds=rng.randrange(span_ms)))
        width, height = rng.choice(((4032, 3024), (3024, 4032), (1920, 1080), (1080, 1350)))
        records.append(
            ImageRecord(
                image_id=image_id,
                user_id=rng.choices(users, user_weights)[0],
                title=title.strip(),
                description=f"Photo {number} of the benchmark set.",
                tags=chosen,
                metadata={"camera": rng.choice(_CAMERAS)} if rng.random() < 0.6 else {},
                filename=f"IMG_{number:05d}.jpg",
                content_type="image/jpeg",
                size_bytes=rng.randint(200_000, 6_000_000),
                width=width,
                height=height,
                sha256=hashlib.sha256(image_id.encode()).hexdigest(),
                s3_key=object_key(image_id, "jpg"),
                created_at=created,
                updated_at=created,
            )
        )
    return records


class _BatchLoader:
    """A DynamoDB client for seeding only: ``transact_write_items`` of Puts is stored
    with ``BatchWriteItem`` (25 items a call) instead of one transaction per image.

    Why: moto deep-copies every table a TransactWriteItems touches, once per item in
    the transaction (its rollback copy), so seeding 10,000 images one transaction each
    costs hours. The items are exactly those the metadata layer builds; their
    ``attribute_not_exists`` conditions are checked here on the keys seen so far (a
    repeated key raises), since a seed set starts from an empty table. Every other
    call goes to the real client.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._count = 0
        self._keys: set[tuple[str, ...]] = set()
        self._key_names: dict[str, list[str]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, TransactItems: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Queue each ``Put`` (refusing any other operation and repeated keys)."""
        for operation in TransactItems:
            if set(operation) != {"Put"}:
                raise ValueError(f"seeding expects Puts only, got {sorted(operation)}")
            put = operation["Put"]
            table = put["TableName"]
            names = self._key_names.get(table)
            if names is None:
                schema = self._client.describe_table(TableName=table)["Table"]["KeySchema"]
                names = self._key_names[table] = [key["AttributeName"] for key in schema]
            key = (table, *(str(put["Item"][name]) for name in names))
            if key in self._keys:
                raise ValueError(f"seeding wrote the same key twice: {key}")
            self._keys.add(key)
            self._pending.setdefault(table, []).append({"PutRequest": {"Item": put["Item"]}})
            self._count += 1
            if self._count >= _BATCH:
                self.flush()
        return {}

    def flush(self) -> None:
        """Write everything queued (BatchWriteItem, retrying unprocessed items)."""
        for table, requests in self._pending.items():
            for first in range(0, len(requests), _BATCH):
                batch: dict[str, Any] = {table: requests[first : first + _BATCH]}
                while batch:
                    response = self._client.batch_write_item(RequestItems=batch)
                    batch = response.get("UnprocessedItems") or {}
        self._pending.clear()
        self._count = 0


def seed_service_table(
    dynamodb: Any, table_name: str, records: Sequence[ImageRecord], layout: ShardLayout
) -> None:
    """Write ``records`` through ``ImageMetadataStore.put_image`` with ``layout`` (see
    :class:`_BatchLoader`)."""
    loader = _BatchLoader(dynamodb)
    store = ImageMetadataStore(loader, table_name, layout)  # type: ignore[arg-type]
    for record in records:
        store.put_image(record)
    loader.flush()


def baseline_item(record: ImageRecord) -> dict[str, Any]:
    """The common layout: one item per image keyed by ``image_id``, every field as an
    attribute (``tags`` a list), plus the folded title the title search compares."""
    return {**record.to_dict(), TITLE_FOLDED: fold_text(record.title)}


def seed_baseline_table(dynamodb: Any, table_name: str, records: Sequence[ImageRecord]) -> None:
    """Create the baseline table (``image_id`` hash key, on demand) and load ``records``."""
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    serializer = TypeSerializer()
    for first in range(0, len(records), _BATCH):
        batch: dict[str, Any] = {
            table_name: [
                {
                    "PutRequest": {
                        "Item": {k: serializer.serialize(v) for k, v in baseline_item(r).items()}
                    }
                }
                for r in records[first : first + _BATCH]
            ]
        }
        while batch:
            batch = dynamodb.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}
