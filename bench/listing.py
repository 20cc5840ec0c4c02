"""Listing: each access pattern paged through by the service, and by Scan + filter.

The service side is ``ImageService.list_images`` called with the query a client's
``GET /images?...`` would parse to (``parse_list_query``), following ``next_token``
until it is null. A botocore hook on the service's DynamoDB client counts every call
and the items it read (``ScannedCount`` of a Query or Scan, the item of a GetItem),
and refuses any Scan (:class:`ScanInRequestPath`).

The baseline answers the same question the common way: Scan the one-item-per-image
table with a ``FilterExpression``, ``Limit`` = the page size, resuming from
``LastEvaluatedKey`` (what an API that hands ``LastEvaluatedKey`` out as its page token
does), presign a URL for each match as the service does, then sort the matches newest
first (the Scan returns them in hash-key order, and its pages are mostly empty).
"""

from __future__ import annotations

import calendar
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from bench.dataset import END, SEARCH_WORD
from chalicelib.metadata import TITLE_FOLDED, ImageRecord
from chalicelib.service import ImageService
from chalicelib.validation import fold_text, parse_list_query


class ScanInRequestPath(RuntimeError):
    """The service issued a DynamoDB Scan while answering a request."""


@dataclass(frozen=True)
class Pattern:
    """One access pattern: ``params`` are the ``GET /images`` query parameters;
    ``without_title`` names the pattern with the same filters minus ``title`` (the
    narrowest Query for the other filters), for title patterns."""

    name: str
    params: dict[str, str]
    without_title: str | None = None


def choose_patterns(records: Sequence[ImageRecord], months: int) -> list[Pattern]:
    """The nine patterns, with parameters picked deterministically from ``records``:
    the most active user, the tag of median popularity, the most frequent tag pair
    (alphabetical order), and the three calendar months starting ``months // 2`` months
    before :data:`~bench.dataset.END`."""
    users = Counter(r.user_id for r in records)
    tags = Counter(t for r in records for t in r.tags)
    pairs = Counter(pair for r in records for pair in combinations(sorted(r.tags), 2))
    top_user = min(users, key=lambda u: (-users[u], u))
    by_popularity = sorted(tags, key=lambda t: (-tags[t], t))
    mid_tag = by_popularity[len(by_popularity) // 2]
    top_pair = min(pairs, key=lambda p: (-pairs[p], p)) if pairs else (mid_tag, mid_tag)
    first = END.year * 12 + END.month - 1 - months // 2
    first_year, first_month = divmod(first, 12)
    last_year, last_month = divmod(first + 2, 12)
    last_day = calendar.monthrange(last_year, last_month + 1)[1]
    date_from = f"{first_year:04d}-{first_month + 1:02d}-01"
    date_to = f"{last_year:04d}-{last_month + 1:02d}-{last_day:02d}"
    span = {"date_from": date_from, "date_to": date_to}
    return [
        Pattern("by user", {"user_id": top_user}),
        Pattern("by tag", {"tags": mid_tag}),
        Pattern("by two tags", {"tags": ",".join(top_pair)}),
        Pattern("by user + date range", {"user_id": top_user, **span}),
        Pattern("by tag + date range", {"tags": mid_tag, **span}),
        Pattern("date range only", dict(span)),
        Pattern("no filter", {}),
        Pattern("title search", {"title": SEARCH_WORD}, without_title="no filter"),
        Pattern("title + user", {"title": SEARCH_WORD, "user_id": top_user}, "by user"),
    ]


def expected_ids(pattern: Pattern, records: Sequence[ImageRecord]) -> list[str]:
    """The reference answer, computed from the generated records: ids, newest first."""
    query = parse_list_query({name: [value] for name, value in pattern.params.items()})
    low, high = query.created_from or "", query.created_to or "~"
    hits = [
        r
        for r in records
        if (query.user_id is None or r.user_id == query.user_id)
        and set(query.tags) <= set(r.tags)
        and low <= r.created_at <= high
        and (query.title is None or query.title in fold_text(r.title))
    ]
    hits.sort(key=lambda r: r.sort_key, reverse=True)
    return [r.image_id for r in hits]


@dataclass
class CallCounter:
    """Counts DynamoDB calls and items read on one client (botocore hooks)."""

    calls: Counter[str] = field(default_factory=Counter)
    items_read: int = 0
    scans: int = 0
    scan_guard: bool = False

    def install(self, client: Any, refuse_scans: bool) -> None:
        """Hook ``client``: count every call; with ``refuse_scans``, raise on a Scan."""
        self.scan_guard = refuse_scans
        client.meta.events.register("after-call.dynamodb", self._after_call)
        client.meta.events.register("before-call.dynamodb.Scan", self._before_scan)

    def reset(self) -> None:
        """Zero the counters (keeps the hooks)."""
        self.calls.clear()
        self.items_read = 0

    def _before_scan(self, **_: Any) -> None:
        self.scans += 1
        if self.scan_guard:
            raise ScanInRequestPath("the service issued a DynamoDB Scan in a request path")

    def _after_call(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        if "ScannedCount" in parsed:
            self.items_read += int(parsed["ScannedCount"])
        elif model.name == "GetItem":
            self.items_read += int("Item" in parsed)
        elif model.name == "BatchGetItem":
            self.items_read += sum(len(v) for v in parsed.get("Responses", {}).values())


@dataclass
class Side:
    """What one side paid for one pattern, over a whole page-through.

    ``page_seconds``: the latency of each page (ours) or Scan call (baseline);
    ``ids``: the result, in the order returned (baseline: sorted newest first).
    """

    returned: int
    read: int
    calls: int
    seconds: float
    page_seconds: list[float]
    page_sizes: list[int]
    ids: list[str]

    def to_json(self) -> dict[str, Any]:
        """The figures, without the ids; times in milliseconds."""
        return {
            "returned": self.returned,
            "read": self.read,
            "calls": self.calls,
            "pages": len(self.page_sizes),
            "total_ms": round(self.seconds * 1000, 2),
            "page_ms_median": round(percentile(self.page_seconds, 50) * 1000, 3),
            "page_ms_p95": round(percentile(self.page_seconds, 95) * 1000, 3),
        }


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of ``samples`` (linear interpolation; 0 when empty)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def page_through(
    service: ImageService, counter: CallCounter, params: dict[str, str], limit: int
) -> Side:
    """List every page of ``params`` through the service, ``limit`` items a page."""
    counter.reset()
    ids: list[str] = []
    page_seconds: list[float] = []
    page_sizes: list[int] = []
    token: str | None = None
    while True:
        query_params = {name: [value] for name, value in params.items()}
        query_params["limit"] = [str(limit)]
        if token is not None:
            query_params["next_token"] = [token]
        began = time.perf_counter()
        page = service.list_images(parse_list_query(query_params))
        page_seconds.append(time.perf_counter() - began)
        ids.extend(item["image_id"] for item in page["items"])
        page_sizes.append(page["count"])
        token = page["next_token"]
        if token is None:
            break
    return Side(
        returned=len(ids),
        read=counter.items_read,
        calls=sum(counter.calls.values()),
        seconds=sum(page_seconds),
        page_seconds=page_seconds,
        page_sizes=page_sizes,
        ids=ids,
    )


def baseline_filter(params: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """``(FilterExpression, ExpressionAttributeValues)`` answering ``params`` on the
    one-item-per-image table (the bounds as ``parse_list_query`` makes them)."""
    query = parse_list_query({name: [value] for name, value in params.items()})
    clauses: list[str] = []
    values: dict[str, Any] = {}
    if query.user_id is not None:
        clauses.append("user_id = :user")
        values[":user"] = {"S": query.user_id}
    for number, tag in enumerate(query.tags):
        clauses.append(f"contains(tags, :tag{number})")
        values[f":tag{number}"] = {"S": tag}
    if query.created_from is not None or query.created_to is not None:
        clauses.append("created_at BETWEEN :from AND :to")
        values[":from"] = {"S": query.created_from or "0000"}
        values[":to"] = {"S": query.created_to or "9999"}
    if query.title is not None:
        clauses.append(f"contains({TITLE_FOLDED}, :title)")
        values[":title"] = {"S": query.title}
    return (" AND ".join(clauses) or None), values


def scan_through(
    dynamodb: Any,
    table_name: str,
    params: dict[str, str],
    limit: int,
    presign: Callable[[str], str],
) -> Side:
    """The common way: Scan + filter, ``Limit=limit``, until ``LastEvaluatedKey`` is gone.

    Like the service, it gives every item it returns a URL (``presign(s3_key)``), so
    both sides build the same response.
    """
    expression, values = baseline_filter(params)
    request: dict[str, Any] = {"TableName": table_name, "Limit": limit}
    if expression:
        request["FilterExpression"] = expression
        request["ExpressionAttributeValues"] = values
    deserializer = TypeDeserializer()
    matches: list[dict[str, Any]] = []
    read = 0
    page_seconds: list[float] = []
    page_sizes: list[int] = []
    while True:
        began = time.perf_counter()
        response = dynamodb.scan(**request)
        items = [
            {key: deserializer.deserialize(value) for key, value in item.items()}
            for item in response.get("Items", [])
        ]
        for item in items:
            item["url"] = presign(item["s3_key"])
        page_seconds.append(time.perf_counter() - began)
        matches.extend(items)
        page_sizes.append(len(items))
        read += int(response["ScannedCount"])
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    began = time.perf_counter()
    matches.sort(key=lambda item: (item["created_at"], item["image_id"]), reverse=True)
    sort_seconds = time.perf_counter() - began
    return Side(
        returned=len(matches),
        read=read,
        calls=len(page_seconds),
        seconds=sum(page_seconds) + sort_seconds,
        page_seconds=page_seconds,
        page_sizes=page_sizes,
        ids=[item["image_id"] for item in matches],
    )


def check(pattern: Pattern, ours: Side, theirs: Side, expected: list[str]) -> list[str]:
    """Wrong answers in our page-through (empty when none): an image on two pages, or a
    result that differs from the baseline's (ids, newest-first order), or a baseline
    that differs from the answer computed from the generated records."""
    problems = []
    if len(set(ours.ids)) != len(ours.ids):
        problems.append(f"{pattern.name}: an image appears on two pages")
    if ours.ids != theirs.ids:
        problems.append(
            f"{pattern.name}: {len(ours.ids)} images, not the baseline's {len(theirs.ids)} "
            "in newest-first order"
        )
    if theirs.ids != expected:
        problems.append(f"{pattern.name}: the baseline disagrees with the generated data")
    return problems


def short_pages(side: Side, limit: int) -> list[int]:
    """1-based numbers of the pages before the last that do not hold ``limit`` items."""
    return [n for n, size in enumerate(side.page_sizes[:-1], 1) if size != limit]
