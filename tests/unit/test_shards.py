"""Write sharding: the k-way merge over shards (on in-memory shards: exact answers and
items read per item returned), shard counts that grow, a table of the unsharded layout
read, deleted and swept by the sharded service, and the feed's month markers."""

from __future__ import annotations

import bisect
import dataclasses
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from chalicelib.keys import ShardLayout, shard_keys, shard_of, sharded
from chalicelib.listing import Budget, Read, Source, merge
from chalicelib.metadata import ImageMetadataStore, ImageRecord
from chalicelib.service import ImageService
from chalicelib.sweep import Sweep
from chalicelib.validation import format_timestamp
from tests.unit.conftest import BUCKET, SETTINGS, TABLE, FixedClock, upload

END = datetime(2026, 11, 21, tzinfo=UTC)


# --- the merge, on in-memory shards ---------------------------------------------------


def _shards(
    count: int, items: int, days: int, seed: int
) -> tuple[dict[int, list[dict[str, Any]]], list[str]]:
    """``items`` images over ``days`` days before END, each in ``shard_of(id, count)``;
    and every sort key, newest first."""
    rng = random.Random(seed)
    shards: dict[int, list[dict[str, Any]]] = {number: [] for number in range(count)}
    for _ in range(items):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = format_timestamp(END - timedelta(milliseconds=rng.randrange(days * 86_400_000)))
        item = {"created_at": created, "image_id": image_id, "odd": rng.random() < 0.3}
        item["sk"] = f"{created}#{image_id}"
        shards[shard_of(image_id, count)].append(item)
    for shard in shards.values():
        shard.sort(key=lambda item: item["sk"])
    every = sorted((item["sk"] for shard in shards.values() for item in shard), reverse=True)
    return shards, every


def _query(shards: dict[int, list[dict[str, Any]]], only_odd: bool) -> Callable[..., Read]:
    """A Query on the in-memory shards: ``BETWEEN low AND high``, newest first, ``Limit``
    items read, the filter (``odd``) applied after the limit as DynamoDB does."""

    def query(source: Source, low: str, high: str, limit: int) -> Read:
        shard = shards[int(source.partition_value)]
        keys = [item["sk"] for item in shard]
        selected = shard[bisect.bisect_left(keys, low) : bisect.bisect_right(keys, high)][::-1]
        read = selected[:limit]
        matches = [dict(item) for item in read if item["odd"] or not only_odd]
        last = read[-1]["sk"] if len(selected) > limit else None
        return Read(matches, len(read), last)

    return query


def _page_through(
    shards: dict[int, list[dict[str, Any]]], limit: int, only_odd: bool = False
) -> tuple[list[str], int, int]:
    """Every page as ``ImageMetadataStore.list_images`` pages (the look-ahead is the
    next page's inclusive start, the density travels with it): ``(sort keys returned,
    items read, pages)``."""
    sources = [Source(None, "pk", str(number), "sk") for number in shards]
    query = _query(shards, only_odd)
    high, density, returned, read, pages = "9999~", None, [], 0, 0
    while True:
        budget = Budget(wanted=limit + 1, density=density)
        matches = list(merge(sources, "0000", high, budget, query, filtered=only_odd))
        read, pages, density = read + budget.read, pages + 1, budget.density
        returned += [f"{item['created_at']}#{item['image_id']}" for item in matches[:limit]]
        if len(matches) <= limit:
            return returned, read, pages
        high = f"{matches[-1]['created_at']}#{matches[-1]['image_id']}"


@pytest.mark.parametrize("count", [1, 4, 16])
@pytest.mark.parametrize(("items", "days"), [(600, 30), (80, 700), (5, 3)])
@pytest.mark.parametrize("limit", [1, 7, 20])
def test_the_merge_returns_every_item_once_newest_first(count, items, days, limit):
    shards, every = _shards(count, items, days, seed=count * 1000 + items + limit)

    returned, _, pages = _page_through(shards, limit)

    assert returned == every
    assert pages == max(1, -(-len(every) // limit))  # full pages, no empty last one


@pytest.mark.parametrize("count", [4, 16])
def test_a_filtered_merge_returns_exactly_the_matches(count):
    shards, _ = _shards(count, 400, 60, seed=count)
    matches = sorted(
        (item["sk"] for shard in shards.values() for item in shard if item["odd"]), reverse=True
    )

    returned, _, _ = _page_through(shards, 10, only_odd=True)

    assert returned == matches


@pytest.mark.parametrize("count", [1, 4, 16])
def test_the_merge_reads_at_most_1_2_items_per_item_returned(count):
    shards, every = _shards(count, 3000, 30, seed=1)

    returned, read, _ = _page_through(shards, 20)

    assert returned == every
    assert read / len(returned) <= 1.2


# --- through the service and moto -------------------------------------------------------


def _service(service: ImageService, layout: ShardLayout) -> ImageService:
    """``service`` with its metadata store reading and writing ``layout``."""
    store = ImageMetadataStore(service.metadata._dynamodb, TABLE, layout)
    settings = dataclasses.replace(SETTINGS, feed_shards=layout.feed, tag_shards=layout.tag)
    return ImageService(service.storage, store, settings, clock=service._clock)


def _titles(service: ImageService, query: str, limit: int = 2) -> list[str]:
    from chalicelib.validation import parse_list_query

    params: dict[str, list[str]] = {}
    for part in filter(None, query.split("&")):
        name, value = part.split("=")
        params[name] = [value]
    titles: list[str] = []
    token = None
    while True:
        page_params = {**params, "limit": [str(limit)]}
        if token:
            page_params["next_token"] = [token]
        page = service.list_images(parse_list_query(page_params))
        titles += [item["title"] for item in page["items"]]
        token = page["next_token"]
        if token is None:
            return titles


def _table() -> list[tuple[str, str]]:
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return sorted((item["pk"]["S"], item["sk"]["S"]) for item in items)


def test_items_written_with_fewer_shards_are_read_after_the_count_grows(
    client, service: ImageService, clock: FixedClock
):
    before = _service(service, ShardLayout(feed=2, tag=2))
    after = _service(service, ShardLayout(feed=5, tag=3))
    titles = []
    for number in range(8):
        clock.now = END - timedelta(days=8 - number)
        writer = before if number < 4 else after
        record = writer.metadata.get_image(upload(client, tags=["a", "b"])["image_id"])
        assert record is not None
        # Re-written by the store of the era: the upload went through the fixture's.
        service.metadata.delete_image(record, owner=None)
        fresh = dataclasses.replace(record, title=f"t{number}", layout=None)
        writer.metadata.put_image(fresh)
        titles.append(f"t{number}")

    for query in ["", "tag=a", "tags=a,b", "user_id=alice"]:
        assert _titles(after, query) == titles[::-1], query
    old = after.metadata.get_image(_ids(after)[-1])
    assert old is not None and old.layout == ShardLayout(feed=2, tag=2)
    after.delete(old.image_id, caller="alice")
    assert not [key for key in _table() if key[1].endswith(old.image_id)]


def _ids(service: ImageService) -> list[str]:
    from chalicelib.validation import parse_list_query

    page = service.list_images(parse_list_query({"limit": ["100"]}))
    return [item["image_id"] for item in page["items"]]


def _old_layout_image(number: int, tags: list[str]) -> tuple[ImageRecord, list[dict[str, Any]]]:
    """A record and the items today's layout wrote for it, with the unsharded key shapes
    written out literally (not by ``chalicelib.keys``)."""
    image_id = str(uuid.UUID(int=number + 1, version=4))
    created = format_timestamp(END - timedelta(days=40 - number))
    record = ImageRecord(
        image_id=image_id,
        user_id="alice",
        title=f"old {number}",
        description="",
        tags=tags,
        metadata={},
        filename="old.png",
        content_type="image/png",
        size_bytes=10,
        width=1,
        height=1,
        sha256="0" * 64,
        s3_key=f"images/{image_id}.png",
        created_at=created,
        updated_at=created,
    )
    sort_key = f"{created}#{image_id}"
    fields = {**record.to_dict(), "title_lower": record.title.lower()}
    image = {
        "pk": f"IMAGE#{image_id}",
        "sk": "META",
        "gsi1pk": "USER#alice",
        "gsi1sk": sort_key,
        "gsi2pk": f"FEED#{created[:7]}",
        "gsi2sk": sort_key,
        **fields,
    }
    ordered = sorted(tags)
    partitions = [f"TAG#{tag}" for tag in ordered] + [
        f"TAG#{a}+{b}" for i, a in enumerate(ordered) for b in ordered[i + 1 :]
    ]
    memberships = [{"pk": pk, "sk": sort_key, **fields} for pk in partitions]
    marker = {"pk": "FEEDMONTHS", "sk": created[:7]}
    return record, [image, *memberships, marker]


def test_a_table_of_the_unsharded_layout_is_listed_deleted_and_swept(
    client, service: ImageService, clock: FixedClock
):
    dynamodb = boto3.client("dynamodb")
    serializer = TypeSerializer()
    old = [_old_layout_image(number, ["a", "b"]) for number in range(3)]
    s3 = boto3.client("s3")
    for record, items in old:
        s3.put_object(Bucket=BUCKET, Key=record.s3_key, Body=b"old")
        for item in items:
            dynamodb.put_item(
                TableName=TABLE, Item={k: serializer.serialize(v) for k, v in item.items()}
            )
    clock.now = END
    new = upload(client, tags=["a", "b"], title="new")
    expected = ["new", "old 2", "old 1", "old 0"]

    for query in ["", "tag=a", "tags=a,b", "tags=b,a", "user_id=alice", "date_from=2026-10-01"]:
        assert _titles(service, query) == expected, query
    assert service.get_image(old[0][0].image_id).layout == ShardLayout(1, 1)

    response = client.http.delete(f"/images/{old[1][0].image_id}", headers={"X-User-Id": "alice"})
    assert response.status_code == 200
    assert not [key for key in _table() if key[1].endswith(old[1][0].image_id)]
    assert _titles(service, "tags=a,b") == ["new", "old 2", "old 0"]

    # An old-layout membership left without its image is an orphan to the sweep.
    lost = {"pk": {"S": f"IMAGE#{old[0][0].image_id}"}, "sk": {"S": "META"}}
    dynamodb.delete_item(TableName=TABLE, Key=lost)
    sweep = Sweep(service, fix=True, grace=timedelta(0), clock=lambda: END + timedelta(days=1))
    report = sweep.run(max_slices=None, resume=False)
    assert sorted(m["pk"] for m in report.orphan_memberships) == ["TAG#a", "TAG#a+b", "TAG#b"]
    assert _titles(service, "tag=a") == ["new", "old 2"]
    assert new["image_id"] in _ids(service)


def test_the_feed_marks_a_month_and_the_next_once_per_process(client, service: ImageService):
    marker_puts: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["pk"]["S"] == "FEEDMONTHS":
            marker_puts.append(params["Item"]["sk"]["S"])
            assert "ConditionExpression" in params

    events = service.metadata._dynamodb.meta.events
    events.register("provide-client-params.dynamodb.PutItem", count)
    for _ in range(3):
        upload(client)

    assert marker_puts == ["2026-11", "2026-12"]


def test_shard_keys_cover_every_smaller_count():
    image_id = str(uuid.uuid4())
    for count in range(1, 20):
        written = sharded("TAG#x", image_id, count)
        assert all(written in shard_keys("TAG#x", larger) for larger in range(count, 21))
    assert sharded("TAG#x", image_id, 1) == "TAG#x"
    assert shard_keys("TAG#x", 1) == ["TAG#x"]
