"""`bench/scale.py` at a small scale: the service's key functions keep every partition
under half its write limit at 10,000 uploads/s, where the unsharded layout does not.
Properties of the keys and the model (seeded), not timing."""

from __future__ import annotations

from bench import scale
from chalicelib.config import DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS
from chalicelib.keys import ShardLayout

SMALL = scale.Workload(rate=10_000, seconds=0.5, users=100_000, tags=20_000)


def test_the_new_layout_keeps_every_partition_under_half_its_limit() -> None:
    result = scale.run(SMALL, ShardLayout(DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS), reads=False)
    old, new, _ = result["layouts"]

    assert result["target"]["passed"], result["target"]
    assert new["busiest_share"] < scale.TARGET_SHARE
    assert all(kind["share"] < scale.TARGET_SHARE for kind in new["by_kind"].values())
    # The reference: one feed partition takes every upload, 20x its limit.
    assert old["busiest"]["key"] == "FEED#2026-11" and old["busiest_share"] > 10
    assert (
        new["sustainable_uploads_per_s"] > 2 * SMALL.rate >= 40 * old["sustainable_uploads_per_s"]
    )
    # Sharding moves write units between partitions; it does not add any.
    assert new["wcu_per_upload"] == old["wcu_per_upload"]


def test_the_workload_is_seeded_and_as_specified() -> None:
    first = scale.records(SMALL)
    assert first == scale.records(SMALL)
    assert len(first) == 5000
    top = sum("tag0" in record.tags for record in first) / len(first)
    assert 0.08 < top < 0.12
    assert max(len(record.tags) for record in first) == 10
    assert min(len(record.tags) for record in first) == 0


def test_write_units_per_upload_grow_with_the_tag_pairs() -> None:
    rows = scale.units_per_upload
    items = scale.new_items(ShardLayout(4, 4))
    zero, three, ten = (rows(tags, items) for tags in (0, 3, 10))

    assert (zero["items"], three["items"], ten["items"]) == (1, 7, 56)
    assert zero["wcu"] < three["wcu"] < ten["wcu"]


def test_item_sizes_follow_dynamodb() -> None:
    assert scale.item_size({"pk": "IMAGE#1", "n": 12345, "l": ["ab"], "m": {"k": "v"}}) == (
        2 + 7 + 1 + 4 + 1 + 3 + 1 + 2 + 1 + 3 + 1 + 1 + 1
    )
    assert scale.write_units(1024) == 1 and scale.write_units(1025) == 2
