"""The scale simulation: the service's own key functions under an internet-scale upload
rate, through a model of DynamoDB's partitions (``make bench``; ``python -m bench.scale``).

Workload (seeded, so every run gives the same figures): ``rate`` uploads per second
(default 10,000) for ``seconds`` seconds of traffic (a sample; the rates are uniform in
time, so a partition's write units per second are its total over the sample divided by
its length); users Zipf-distributed (exponent 1 over ``users``), each held to
``user_rate_limit`` uploads per second (an upload over it comes from the next user
drawn: the limit is an assumption about the deployment, see the README); 0-10 tags per
upload (uniform), drawn without repetition from ``tags`` tags whose Zipf exponent is
chosen so that the most popular tag is on 10 % of uploads; 100 million images already
in the table (they set the month's density for the read figures; nothing is stored).

Model: every item an upload writes, built by ``chalicelib.metadata.image_item`` and
``membership_items`` (the service's code), sized as DynamoDB sizes items (attribute
names plus values; numbers by digits; lists and maps with their overhead), costs
``ceil(size / 1 KB)`` write units, twice in a transaction, on its table partition key
value; the image item is also written to GSI1 and GSI2 (all attributes projected, 100
bytes of index overhead, one write unit per KB: index propagation is not
transactional). Each partition key value, on the table and on each index, serves at most
1,000 write units and 3,000 read units per second. Read units of a listing page: every
Query the service's k-way merge (``chalicelib.listing.merge``) makes for it, on
in-memory shards, costs half a unit per 4 KB read (eventually consistent), at least half
a unit.

Left out: adaptive capacity (DynamoDB moves throughput to a hot key, and isolates a hot
key on its own partition, so a real table absorbs more than the per-key limit for a
while), burst capacity (up to 300 s of unused throughput), splits of a partition that
outgrows 10 GB (they do not raise one key value's limit), the direct-upload items (one
fresh key per upload), the month markers (a conditional put per process and month),
and the sweep.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import random
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.config import DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS
from chalicelib.keys import ShardLayout, shard_of
from chalicelib.listing import Budget, Read, Source, merge
from chalicelib.metadata import ImageRecord, RenditionRecord, image_item, membership_items
from chalicelib.storage import object_key
from chalicelib.validation import format_timestamp

WCU_LIMIT = 1000
RCU_LIMIT = 3000
#: Target: the busiest partition under this share of its write limit.
TARGET_SHARE = 0.5
INDEX_OVERHEAD_BYTES = 100
START = datetime(2026, 11, 21, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Workload:
    """The simulated traffic (see the module docstring)."""

    rate: int = 10_000
    seconds: float = 1.0
    users: int = 10_000_000
    user_rate_limit: int = 5
    tags: int = 100_000
    top_tag_share: float = 0.10
    table_images: int = 100_000_000
    page: int = 20
    seed: int = 42


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item, in bytes: each attribute's name plus its value."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | Decimal):
        digits = len(str(abs(value)).replace(".", "").lstrip("0")) or 1
        return 1 + math.ceil(digits / 2)
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + 1 + _value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(1 + _value_size(v) for v in value)
    raise TypeError(f"no DynamoDB size for {type(value).__name__}")


def write_units(size: int) -> int:
    """Write units of one item write of ``size`` bytes (1 KB each, rounded up)."""
    return max(1, math.ceil(size / 1024))


# --- the layout before sharding: kept here only, as the reference -------------------


def old_items(record: ImageRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The image item and membership items of the layout before sharding: GSI2
    ``FEED#{yyyy-mm}``, ``TAG#{tag}`` and ``TAG#{a}+{b}`` unsharded (what
    ``ShardLayout(1, 1)`` writes, spelled out independently)."""
    image = image_item(record, ShardLayout())
    image["gsi2pk"] = f"FEED#{record.created_at[:7]}"
    del image["shards"]
    ordered = sorted(record.tags)
    bases = [f"TAG#{t}" for t in ordered] + [
        f"TAG#{a}+{b}" for a, b in itertools.combinations(ordered, 2)
    ]
    attributes = {k: v for k, v in image.items() if not k.startswith(("pk", "sk", "gsi", "sh"))}
    return image, [{"pk": pk, "sk": record.sort_key, **attributes} for pk in bases]


def slim_pair_items(record: ImageRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The alternative weighed for the tag pairs (not built): the new layout's items,
    with each pair item carrying only its key and what a listing filter reads (a page's
    records would then come from a ``BatchGetItem`` of the image items)."""
    image, memberships = new_items(ShardLayout(DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS))(record)
    kept = ("pk", "sk", "image_id", "tags", "title_lower")
    slim = [
        {k: v for k, v in item.items() if k in kept} if "+" in item["pk"] else item
        for item in memberships
    ]
    return image, slim


def new_items(
    layout: ShardLayout,
) -> Callable[[ImageRecord], tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The service's own items for ``layout``."""

    def items(record: ImageRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return image_item(record, layout), membership_items(record, layout)

    return items


# --- the workload ---------------------------------------------------------------------


class _Zipf:
    """Ranks 0..count-1 drawn with weight ``1 / (rank + 1) ** exponent``."""

    def __init__(self, count: int, exponent: float) -> None:
        self.cumulative: list[float] = list(
            itertools.accumulate(float((rank + 1) ** -exponent) for rank in range(count))
        )

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])


def tag_exponent(tags: int, top_share: float, mean_tags: float) -> float:
    """The Zipf exponent over ``tags`` tags whose top tag is on ``top_share`` of uploads
    carrying ``mean_tags`` tags on average: bisection on the top tag's weight
    ``1 / H(tags, s)`` (the first 1,000 terms summed, the tail integrated)."""

    def harmonic(exponent: float) -> float:
        head = sum(float((rank + 1) ** -exponent) for rank in range(min(tags, 1000)))
        if tags <= 1000:
            return head
        low, high = 1000.5, tags + 0.5
        if abs(exponent - 1) < 1e-9:
            return head + math.log(high / low)
        return head + float(high ** (1 - exponent) - low ** (1 - exponent)) / (1 - exponent)

    low, high = 0.0, 3.0
    for _ in range(50):
        middle = (low + high) / 2
        if mean_tags / harmonic(middle) < top_share:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def records(workload: Workload) -> list[ImageRecord]:
    """The sample's uploads, in time order (deterministic for ``workload.seed``)."""
    rng = random.Random(workload.seed)
    count = int(workload.rate * workload.seconds)
    users = _Zipf(workload.users, 1.0)
    tags = _Zipf(workload.tags, tag_exponent(workload.tags, workload.top_tag_share, 5.0))
    per_user: Counter[int] = Counter()
    cap = max(1, int(workload.user_rate_limit * workload.seconds))
    out = []
    for number in range(count):
        user = users.draw(rng)
        while per_user[user] >= cap:
            user = users.draw(rng)
        per_user[user] += 1
        chosen: set[int] = set()
        wanted = rng.randint(0, 10)
        while len(chosen) < wanted:
            chosen.add(tags.draw(rng))
        created = START + timedelta(seconds=number / workload.rate)
        out.append(_record(rng, f"user{user}", [f"tag{t}" for t in sorted(chosen)], created))
    return out


def _record(rng: random.Random, user: str, tags: list[str], created: datetime) -> ImageRecord:
    """A record with the sizes of a phone photo's: a short title and caption, three
    renditions, a BlurHash."""
    image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    stamp = format_timestamp(created)
    return ImageRecord(
        image_id=image_id,
        user_id=user,
        title="Golden hour at the harbour",
        description="Evening walk along the old harbour with friends, the light was unreal.",
        tags=tags,
        metadata={"camera": "iPhone 15 Pro"},
        filename="IMG_4821.HEIC",
        content_type="image/heic",
        size_bytes=2_873_114,
        width=4032,
        height=3024,
        sha256="9f2c" * 16,
        s3_key=object_key(image_id, "heic"),
        created_at=stamp,
        updated_at=stamp,
        taken_at="2026-11-21T18:42:10+01:00",
        placeholder="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        dominant_color="#c08a5b",
        renditions=[
            RenditionRecord(
                size,
                size,
                size * 3 // 4,
                "image/webp",
                9000 * size // 320,
                f"renditions/{image_id}/{size}.webp",
            )
            for size in (320, 640, 1080)
        ],
    )


# --- the partition model --------------------------------------------------------------


@dataclass
class Load:
    """Write units per partition key value, per table or index, over the sample."""

    units: dict[tuple[str, str], float]
    uploads: int
    seconds: float
    total_units: float

    def busiest(self, kind: str | None = None) -> tuple[str, str, float]:
        """``(table or index, key, write units per second)`` of the busiest partition
        (of keys starting with ``kind`` when given)."""
        candidates = [
            (where, key, units / self.seconds)
            for (where, key), units in self.units.items()
            if kind is None or key.startswith(kind)
        ]
        return max(candidates, key=lambda entry: entry[2], default=("-", "-", 0.0))


def simulate(
    uploads: Sequence[ImageRecord],
    seconds: float,
    items: Callable[[ImageRecord], tuple[dict[str, Any], list[dict[str, Any]]]],
) -> Load:
    """Write units every partition takes for ``uploads`` written as ``items`` lays
    them out (one transaction each)."""
    units: dict[tuple[str, str], float] = defaultdict(float)
    total = 0.0
    for record in uploads:
        image, memberships = items(record)
        size = item_size(image)
        for item, item_bytes in [(image, size)] + [(m, item_size(m)) for m in memberships]:
            cost = 2 * write_units(item_bytes)
            units[("table", item["pk"])] += cost
            total += cost
        index_cost = write_units(size + INDEX_OVERHEAD_BYTES)
        units[("GSI1", image["gsi1pk"])] += index_cost
        units[("GSI2", image["gsi2pk"])] += index_cost
        total += 2 * index_cost
    return Load(dict(units), len(uploads), seconds, total)


def units_per_upload(
    tags: int, items: Callable[[ImageRecord], tuple[dict[str, Any], list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Write units of one upload with ``tags`` tags: table (transaction, 2x), indexes,
    and the items written."""
    record = _record(random.Random(tags), "user1", [f"tag{n:02d}" for n in range(tags)], START)
    image, memberships = items(record)
    table = sum(2 * write_units(item_size(item)) for item in [image, *memberships])
    index = 2 * write_units(item_size(image) + INDEX_OVERHEAD_BYTES)
    return {
        "tags": tags,
        "items": 1 + len(memberships),
        "image_item_bytes": item_size(image),
        "membership_item_bytes": item_size(memberships[0]) if memberships else 0,
        "table_wcu": table,
        "index_wcu": index,
        "wcu": table + index,
    }


# --- reads ----------------------------------------------------------------------------


def page_read_units(shards: int, density_per_second: float, page: int, seed: int) -> dict[str, Any]:
    """Read units and Queries of listing pages over ``shards`` shards of a partition that
    gets ``density_per_second`` items a second, from the service's merge on in-memory
    shards: the mean over the pages of one page-through of 2,000 items."""
    rng = random.Random(seed)
    record = _record(rng, "user1", ["a", "b", "c"], START)
    item_bytes = item_size(image_item(record, ShardLayout()))
    data: dict[int, list[str]] = {number: [] for number in range(shards)}
    for _ in range(2000):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        moment = START - timedelta(seconds=rng.random() * 2000 / density_per_second)
        data[shard_of(image_id, shards)].append(f"{format_timestamp(moment)}#{image_id}")
    for keys in data.values():
        keys.sort()
    calls: list[int] = []

    def query(source: Source, low: str, high: str, limit: int) -> Read:
        keys = data[int(source.partition_value)]
        chosen = keys[bisect.bisect_left(keys, low) : bisect.bisect_right(keys, high)][::-1]
        read = chosen[:limit]
        calls.append(len(read))
        items = [{"created_at": k[:24], "image_id": k[25:]} for k in read]
        return Read(items, len(read), read[-1] if len(chosen) > limit else None)

    sources = [Source(None, "pk", str(number), "sk") for number in range(shards)]
    high, density, pages, returned = "9999~", None, 0, 0
    while True:
        budget = Budget(wanted=page + 1, density=density)
        found = list(merge(sources, "0000", high, budget, query, filtered=False))
        pages, density = pages + 1, budget.density
        returned += min(len(found), page)
        if len(found) <= page:
            break
        high = f"{found[-1]['created_at']}#{found[-1]['image_id']}"
    units = sum(max(0.5, 0.5 * math.ceil(n * item_bytes / 4096)) for n in calls)
    return {
        "shards": shards,
        "queries_per_page": len(calls) / pages,
        "items_read_per_returned": sum(calls) / returned,
        "rcu_per_page": units / pages,
        "unsharded_rcu_per_page": 0.5 * math.ceil((page + 1) * item_bytes / 4096),
    }


# --- the report -----------------------------------------------------------------------


def run(workload: Workload, layout: ShardLayout, reads: bool = True) -> dict[str, Any]:
    """Both layouts (and the slim-pair alternative) under ``workload``: busiest
    partitions, sustainable rate, write units per upload, and (``reads``) read units of
    the listing patterns."""
    sample = records(workload)
    layouts = {
        "old (unsharded)": old_items,
        f"new: feed {layout.feed} shards, tags {layout.tag}": new_items(layout),
        "alternative: slim pair items": slim_pair_items,
    }
    result: dict[str, Any] = {
        "workload": workload.__dict__,
        "layout": layout.to_item(),
        "layouts": [],
    }
    for name, items in layouts.items():
        load = simulate(sample, workload.seconds, items)
        where, key, busiest = load.busiest()
        per_kind = {
            kind: load.busiest(prefix)
            for kind, prefix in (
                ("feed (GSI2)", "FEED#"),
                ("tag", "TAG#"),
                ("user (GSI1)", "USER#"),
            )
        }
        pair = max(
            ((w, k, u / load.seconds) for (w, k), u in load.units.items() if "+" in k),
            key=lambda entry: entry[2],
            default=("-", "-", 0.0),
        )
        per_kind["tag pair"] = pair
        result["layouts"].append(
            {
                "layout": name,
                "busiest": {"where": where, "key": key, "wcu_per_s": busiest},
                "busiest_share": busiest / WCU_LIMIT,
                "by_kind": {
                    kind: {"where": w, "key": k, "wcu_per_s": u, "share": u / WCU_LIMIT}
                    for kind, (w, k, u) in per_kind.items()
                },
                "sustainable_uploads_per_s": workload.rate * WCU_LIMIT / busiest,
                "wcu_per_upload": load.total_units / load.uploads,
                "per_tag_count": [units_per_upload(tags, items) for tags in (0, 3, 10)],
            }
        )
    month_rate = workload.table_images / (12 * 30 * 86400)
    top_tag = workload.top_tag_share * workload.rate
    result["reads"] = (
        {}
        if not reads
        else {
            "feed": page_read_units(layout.feed, workload.rate, workload.page, workload.seed),
            "popular tag": page_read_units(layout.tag, top_tag, workload.page, workload.seed),
            "rare tag (an image a day)": page_read_units(
                layout.tag, 1 / 86400, workload.page, workload.seed
            ),
            "user": page_read_units(1, 1 / 3600, workload.page, workload.seed),
        }
    )
    result["reads_note"] = (
        f"the table's 100 M images are ~{month_rate:.1f} images/s over a year; the feed is "
        "modelled at the simulated upload rate"
    )
    new = result["layouts"][1]
    result["target"] = {
        "target": f"busiest partition < {TARGET_SHARE:.0%} of its write limit at "
        f"{workload.rate:,} uploads/s",
        "passed": new["busiest_share"] < TARGET_SHARE,
        "measured": f"{new['busiest_share']:.0%} ({new['busiest']['key']} on "
        f"{new['busiest']['where']})",
    }
    return result


def render(result: dict[str, Any]) -> list[str]:
    """The simulation as Markdown lines for the bench report."""
    work = result["workload"]
    lines = [
        f"## Scale simulation (`bench/scale.py`): partitions at {work['rate']:,} uploads/s",
        "",
        f"{work['rate'] * work['seconds']:,.0f} uploads ({work['seconds']} s of traffic, "
        f"seed {work['seed']}); users Zipf over {work['users']:,}, at most "
        f"{work['user_rate_limit']} uploads/s each; 0-10 tags from {work['tags']:,}, the "
        f"top tag on {work['top_tag_share']:.0%} of uploads; limits {WCU_LIMIT:,} WCU/s and "
        f"{RCU_LIMIT:,} RCU/s per partition key value. Model and omissions: "
        "`bench/scale.py`'s docstring.",
        "",
        "| layout | busiest partition | WCU/s | share of limit | feed | tag | tag pair | user "
        "| sustainable uploads/s | WCU per upload | WCU at 0 / 3 / 10 tags |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in result["layouts"]:
        kinds = entry["by_kind"]
        per_tags = " / ".join(str(row["wcu"]) for row in entry["per_tag_count"])
        lines.append(
            f"| {entry['layout']} | `{entry['busiest']['key']}` ({entry['busiest']['where']}) "
            f"| {entry['busiest']['wcu_per_s']:,.0f} | {entry['busiest_share']:.0%} "
            f"| {kinds['feed (GSI2)']['share']:.0%} | {kinds['tag']['share']:.0%} "
            f"| {kinds['tag pair']['share']:.0%} | {kinds['user (GSI1)']['share']:.0%} "
            f"| {entry['sustainable_uploads_per_s']:,.0f} | {entry['wcu_per_upload']:.1f} "
            f"| {per_tags} |"
        )
    sizes = result["layouts"][1]["per_tag_count"][1]
    lines += [
        "",
        f"Item sizes: image item {sizes['image_item_bytes']} B, each membership item "
        f"{sizes['membership_item_bytes']} B (a full copy of the listing fields).",
        "",
        "| listing page (20 items) | shards | Queries/page | items read/returned | RCU/page "
        "| RCU/page unsharded |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["reads"].items():
        lines.append(
            f"| {name} | {row['shards']} | {row['queries_per_page']:.1f} "
            f"| {row['items_read_per_returned']:.2f} | {row['rcu_per_page']:.1f} "
            f"| {row['unsharded_rcu_per_page']:.1f} |"
        )
    lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.scale [--rate N] [--seconds S] [--feed-shards N]
    [--tag-shards N] [--json]``: print the simulation."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--rate", type=int, default=Workload.rate)
    parser.add_argument("--seconds", type=float, default=Workload.seconds)
    parser.add_argument("--feed-shards", type=int, default=DEFAULT_FEED_SHARDS)
    parser.add_argument("--tag-shards", type=int, default=DEFAULT_TAG_SHARDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        Workload(rate=args.rate, seconds=args.seconds),
        ShardLayout(feed=args.feed_shards, tag=args.tag_shards),
    )
    print(json.dumps(result, indent=2) if args.json else "\n".join(render(result)))
    return 0 if result["target"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
