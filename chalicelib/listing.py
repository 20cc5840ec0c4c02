"""The k-way merge of a listing over the shards of one partition, newest first.

Every shard holds its items in sort-key order (``{created_at}#{image_id}``), and a page
wants the ``wanted`` newest of their union. Each shard has a *frontier*: every item of
the shard at or above it has been read. An item read from any shard is final (no unread
item of any shard sorts above it) once it is at or above the highest frontier of the
shards not yet exhausted, and is then yielded.

How the shards are read, so that items read stay close to items returned:

- one shard (or one left): Query it with ``Limit`` = what is still wanted (a filtered
  listing: sized by the selectivity seen so far), as an unsharded partition is read;
- nothing known about the partition's density yet: *probe* one unread shard with
  ``Limit`` = its share of what is wanted;
- then *windows*: from the density seen so far (matches per millisecond per shard;
  the previous page's, carried in its token, before this page has read anything), the
  time window that should hold :data:`WINDOW_AIM` of what is still wanted, Queried on
  every shard with ``BETWEEN window start AND frontier`` (and ``Limit`` = what is
  wanted, which no shard can need more of). An undershoot costs another round of
  Queries that mostly come back empty (an empty Query reads no item); an overshoot is
  read again by the next page. Rounds shrink geometrically, so a page is a few rounds;
  a round that finds nothing (a gap, the end of the data) quadruples the next window.

Items read but not yielded by a page lie below its look-ahead, where the next page
resumes for every shard alike, so the page token needs one position, not one per shard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Share of what is still wanted that a window aims at (below 1: an undershoot costs a
#: round of mostly empty Queries, an overshoot costs items read twice).
WINDOW_AIM = 0.55
#: Weight, in matches, of the density a page inherits from the previous one: a page's
#: own estimate rests on about a page of matches (noisy by a quarter at 20), and the
#: windows it sizes are read again when they overshoot.
PRIOR_MATCHES = 40
#: Largest Query ``Limit`` a listing asks for (responses stop at 1 MB anyway).
MAX_QUERY_LIMIT = 1000


@dataclass(frozen=True)
class Source:
    """One partition to Query: ``index`` (None: the table), the partition key's
    attribute name and value, and the sort key's attribute name."""

    index: str | None
    partition_name: str
    partition_value: str
    sort_key: str


@dataclass
class Read:
    """What one Query returned: the matching ``items`` (deserialised, newest first),
    ``scanned`` (items read, ``ScannedCount``) and, when the Query stopped at its
    ``Limit``, ``last`` (the sort key of the last item evaluated)."""

    items: list[dict[str, Any]]
    scanned: int
    last: str | None


#: ``query(source, low, high, limit)``: one Query of ``source`` for sort keys in
#: ``[low, high]``, newest first, reading at most ``limit`` items.
QueryFn = Callable[[Source, str, str, int], Read]


@dataclass
class Budget:
    """How many more matches one listing wants, and what its Queries have seen.

    ``read``/``matched`` count the items the listing's Queries read and matched;
    ``calls`` the Queries; ``density`` the matches per millisecond per shard seen so far
    (None before anything was read), starting from the previous page's, which also
    weighs in every estimate as :data:`PRIOR_MATCHES` matches.
    """

    wanted: int
    read: int = 0
    matched: int = 0
    calls: int = 0
    density: float | None = None

    def __post_init__(self) -> None:
        self.prior = self.density

    def record(self, read: Read) -> None:
        """Account for one Query response."""
        self.read += read.scanned
        self.matched += len(read.items)
        self.calls += 1

    def query_limit(self, filtered: bool, share: float = 1.0) -> int:
        """``Limit`` for a Query that should bring ``share`` of what is still wanted.

        Unfiltered, every item read matches: exactly that. Filtered, half the items
        expected to hold it at the selectivity seen so far (assumed 1 before anything
        was read): a page resumes at its look-ahead, so whatever a Query read past the
        page's last match is read again by the next page, and smaller Queries near the
        end keep that overshoot small.
        """
        wanted = max(1.0, self.wanted * share)
        if not filtered:
            return max(1, min(math.ceil(wanted), MAX_QUERY_LIMIT))
        selectivity = (self.matched + 1) / (self.read + 1)
        return max(1, min(math.ceil(wanted / selectivity / 2), MAX_QUERY_LIMIT))


@dataclass
class _Shard:
    source: Source
    frontier: str | None = None  # None: nothing read yet
    done: bool = False
    matched: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)


def sort_key_of(item: dict[str, Any]) -> str:
    """``{created_at}#{image_id}`` of a listing item."""
    return f"{item['created_at']}#{item['image_id']}"


def merge(
    sources: list[Source],
    low: str,
    high: str,
    budget: Budget,
    query: QueryFn,
    *,
    filtered: bool,
) -> Iterator[dict[str, Any]]:
    """Matching items of ``sources`` with ``low <= sort key <= high``, newest first, each
    once, until ``budget.wanted`` is 0 or every shard is exhausted (see the module
    docstring). Every yielded item decrements ``budget.wanted``.

    Args:
        sources: the shards of one partition (at least one).
        low, high: inclusive sort-key bounds (``high`` may be a cursor).
        budget: the listing's budget, shared by consecutive merges (feed months).
        query: runs one Query (:data:`QueryFn`).
        filtered: whether the Queries carry a FilterExpression (not every item read
            matches).
    """
    return _Merge(sources, low, high, budget, query, filtered).run()


_TOP = "\U0010ffff"


class _Merge:
    """One merge's state: the shards, and the newest sort key read (the top of the
    time span the density is measured over)."""

    def __init__(
        self,
        sources: list[Source],
        low: str,
        high: str,
        budget: Budget,
        query: QueryFn,
        filtered: bool,
    ) -> None:
        self.shards = [_Shard(source) for source in sources]
        self.low, self.high, self.budget = low, high, budget
        self.query, self.filtered = query, filtered
        self.newest: str | None = None
        self.empty_rounds = 0

    def run(self) -> Iterator[dict[str, Any]]:
        budget = self.budget
        while True:
            active = [shard for shard in self.shards if not shard.done]
            safe = max((_frontier(shard) for shard in active), default=None)
            ready: list[dict[str, Any]] = []
            for shard in self.shards:
                keep = [item for item in shard.items if safe is not None and item["_sk"] < safe]
                ready += [item for item in shard.items if safe is None or item["_sk"] >= safe]
                shard.items = keep
            for item in sorted(ready, key=lambda item: str(item["_sk"]), reverse=True):
                if budget.wanted <= 0:
                    return
                budget.wanted -= 1
                del item["_sk"]
                yield item
            if safe is None or budget.wanted <= 0:
                return
            if len(active) == 1:
                self._read(active[0], self.low, budget.query_limit(self.filtered))
                continue
            top = _millis(self.newest) if self.newest is not None else _millis(self.high)
            density = self._density(top)
            if density is not None:
                budget.density = density
            elif budget.density:
                density = budget.density
            unread = [shard for shard in active if shard.frontier is None]
            if density is None or top is None:
                shard = unread[0] if unread else max(active, key=_frontier)
                share = 1 / len(active)
                limit = max(2, budget.query_limit(self.filtered, share))
                self._read(shard, self.low, limit)
                continue
            start = top if safe == _TOP else (_millis(safe) or top)
            if density > 0:
                span = WINDOW_AIM * budget.wanted / (density * len(active))
            else:  # nothing matched in what was read: as far back again
                bottoms = [_millis(_frontier(shard)) or top for shard in active]
                span = top - min(bottoms)
            # Each round in a row that found nothing (a gap, or the end of the data)
            # quadruples the window, so a page crosses any gap in a few rounds.
            span = max(1.0, span) * 4**self.empty_rounds
            window = max(self.low, _timestamp(start - span))
            # After an empty round the density is a guess: each shard brings at most its
            # share of what is wanted, so a window that overshoots a gap overshoots by
            # at most a shard's share, not by what is wanted, per shard.
            share = 1 / len(active) if self.empty_rounds else 1.0
            limit = budget.query_limit(self.filtered, share)
            found = budget.matched
            for shard in active:
                if shard.frontier is None or shard.frontier > window:
                    self._read(shard, window, limit)
            self.empty_rounds = 0 if budget.matched > found else self.empty_rounds + 1

    def _read(self, shard: _Shard, low: str, limit: int) -> None:
        """Query ``shard`` from its frontier (exclusive) down to ``low`` (inclusive)."""
        upper = self.high if shard.frontier is None else min(self.high, _before(shard.frontier))
        if upper >= low:
            result = self.query(shard.source, low, upper, limit)
            self.budget.record(result)
            for item in result.items:
                item["_sk"] = key = sort_key_of(item)
                if self.newest is None or key > self.newest:
                    self.newest = key
            shard.items += result.items
            shard.matched += len(result.items)
            if result.last is not None:
                shard.frontier = result.last
                return
        shard.frontier = low
        shard.done = low <= self.low

    def _density(self, top: float | None) -> float | None:
        """Matches per millisecond per shard, over the shards read so far (None when
        what was read spans no time)."""
        if top is None:
            return None
        matched, span = 0.0, 0.0
        for shard in self.shards:
            bottom = None if shard.frontier is None else _millis(shard.frontier)
            if bottom is None:
                continue
            matched += shard.matched
            span += max(0.0, top - bottom)
        prior = self.budget.prior
        if prior and span > 0:
            matched, span = matched + PRIOR_MATCHES, span + PRIOR_MATCHES / prior
        return matched / span if span > 0 else None


def _frontier(shard: _Shard) -> str:
    return _TOP if shard.frontier is None else shard.frontier


def _before(key: str) -> str:
    """The largest string below ``key`` that sorts above every sort key below it:
    ``key`` minus its last character's successor (sort keys use no character above
    ``~``)."""
    return key[:-1] + chr(ord(key[-1]) - 1) + "~"


def _millis(key: str) -> float | None:
    """Epoch milliseconds of a sort key or bound's ``created_at`` part (None when it is
    not a timestamp, such as the open bounds)."""
    try:
        moment = datetime.fromisoformat(key[:23]).replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp() * 1000


def _timestamp(millis: float) -> str:
    """The ``created_at`` format (``2026-11-21T10:30:00.123Z``) of epoch ``millis``."""
    if millis <= 0:
        return "0000"
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
