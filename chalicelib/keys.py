"""Key formats of the metadata table and the write-sharding rule: the only code that
knows them (``chalicelib/metadata.py`` builds items from these, ``bench/scale.py`` feeds
them a synthetic workload).

Partitions that many uploads share (the feed's month, a popular tag, a pair of popular
tags) are write-sharded: an item goes to ``{base}#{shard}``, where ``shard`` is a
deterministic function of its image id (:func:`shard_of`) and the partition kind's shard
count (``FEED_SHARDS``, ``TAG_SHARDS``). A count of 1 is the unsharded key ``{base}``,
the layout of tables written before sharding existed.

Why readers always find an item:

- ``shard_of(image_id, n)`` is ``crc32(image_id) mod n``: the same id always lands in
  the same shard for the same count;
- counts only grow, and an item written with count ``m`` sits in a shard below ``m``, so
  a reader that queries ``{base}`` and ``{base}#0`` … ``{base}#{n-1}`` with the current
  count ``n >= m`` sees every item ever written (:func:`shard_keys`);
- the image item stores the counts its own keys were written with (:class:`ShardLayout`,
  attribute ``shards``; absent on items of the unsharded layout, which read back as
  count 1), so a delete (or an edit) computes exactly the keys that exist, whatever the
  configuration is today.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IMAGE_PREFIX = "IMAGE#"
USER_PREFIX = "USER#"
FEED_PREFIX = "FEED#"
TAG_PREFIX = "TAG#"
#: Partition of the feed's month markers (``sk = yyyy-mm``): few writes, never sharded.
FEED_MONTHS_PARTITION = "FEEDMONTHS"
#: Item attribute holding the :class:`ShardLayout` an image's keys were written with.
LAYOUT_ATTRIBUTE = "shards"
#: Largest shard count accepted from configuration (a listing queries every shard).
MAX_SHARDS = 64


@dataclass(frozen=True)
class ShardLayout:
    """Shard counts, each 1 (unsharded) to :data:`MAX_SHARDS`.

    Attributes:
        feed: shards of each feed month on GSI2 (``FEED_SHARDS``).
        tag: shards of each tag and tag-pair membership partition (``TAG_SHARDS``).
    """

    feed: int = 1
    tag: int = 1

    def __post_init__(self) -> None:
        for name, count in (("feed", self.feed), ("tag", self.tag)):
            if not 1 <= count <= MAX_SHARDS:
                raise ValueError(f"{name} shard count must be 1-{MAX_SHARDS}, got {count}")

    def to_item(self) -> dict[str, int]:
        """The value stored in the image item's :data:`LAYOUT_ATTRIBUTE`."""
        return {"feed": self.feed, "tag": self.tag}

    @classmethod
    def from_item(cls, value: Mapping[str, Any] | None) -> ShardLayout:
        """The layout stored in an image item; ``None`` (attribute absent: an item of
        the unsharded layout) is ``ShardLayout(1, 1)``."""
        if not value:
            return cls()
        return cls(feed=int(value.get("feed", 1)), tag=int(value.get("tag", 1)))


#: The layout of tables written before sharding: every partition unsharded.
UNSHARDED = ShardLayout()


def shard_of(image_id: str, count: int) -> int:
    """The shard (0 to ``count - 1``) of ``image_id``: ``crc32(image_id) mod count``."""
    return zlib.crc32(image_id.encode()) % count


def sharded(base: str, image_id: str, count: int) -> str:
    """The partition key of ``image_id``'s item in partition ``base`` split ``count``
    ways: ``base`` itself when ``count`` is 1, else ``{base}#{shard}``."""
    return base if count == 1 else f"{base}#{shard_of(image_id, count)}"


def shard_keys(base: str, count: int) -> list[str]:
    """Every partition key a reader of ``base`` must Query with the current ``count``:
    the unsharded ``base`` (items written with count 1, among them those of tables
    written before sharding), then ``{base}#0`` … ``{base}#{count - 1}``."""
    return [base] + ([f"{base}#{shard}" for shard in range(count)] if count > 1 else [])


def image_key(image_id: str) -> str:
    """Partition key of the image item (sort key ``META``)."""
    return f"{IMAGE_PREFIX}{image_id}"


def user_partition(user_id: str) -> str:
    """GSI1 partition of a user's images. Not sharded: one user's uploads are bounded
    by what one person uploads (see the README's *Data model*)."""
    return f"{USER_PREFIX}{user_id}"


def feed_partition(created_at: str) -> str:
    """GSI2 base partition of the month of ``created_at`` (ISO 8601): ``FEED#{yyyy-mm}``."""
    return f"{FEED_PREFIX}{created_at[:7]}"


def tag_partitions(tags: list[str] | tuple[str, ...]) -> list[str]:
    """Base partitions of an image's membership items: ``TAG#{tag}`` for each tag and
    ``TAG#{a}+{b}`` for each pair of tags (``a < b``; ``+`` and ``#`` never occur in a
    tag), tags in sorted order."""
    ordered = sorted(tags)
    return [f"{TAG_PREFIX}{tag}" for tag in ordered] + [
        f"{TAG_PREFIX}{a}+{b}" for a, b in itertools.combinations(ordered, 2)
    ]


def tags_query_partition(tags: tuple[str, ...]) -> str:
    """The base membership partition a listing of ``tags`` (one or more) Queries: the
    tag's, or the pair's of the first two in sorted order."""
    ordered = sorted(tags)
    return (
        f"{TAG_PREFIX}{ordered[0]}"
        if len(ordered) == 1
        else f"{TAG_PREFIX}{ordered[0]}+{ordered[1]}"
    )


def membership_partitions(image_id: str, tags: list[str], layout: ShardLayout) -> list[str]:
    """Partition keys of every membership item of an image (sort key
    ``{created_at}#{image_id}``), sharded with ``layout.tag``: the one rule every writer
    (upload, delete, edit, sweep) uses."""
    return [sharded(base, image_id, layout.tag) for base in tag_partitions(tags)]


def feed_shard(image_id: str, created_at: str, layout: ShardLayout) -> str:
    """GSI2 partition key of an image: its month's feed partition, sharded with
    ``layout.feed``."""
    return sharded(feed_partition(created_at), image_id, layout.feed)
