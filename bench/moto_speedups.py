"""Make moto's DynamoDB cost what DynamoDB costs, without changing what it answers.

Why: moto 5.2 (pinned in ``requirements-dev.txt``) is written for correctness on small
tables. At the benchmark's default size (10,000 images, ~80,000 items) one Query takes
~2 s and seeding one image at a time takes over ten minutes. The causes, and what
:func:`faster_moto` does about each (nothing else is patched):

1. ``Table.all_items`` sorts the whole table with Python-level comparisons on every
   Query and Scan, and a Query then walks every item of the table, not of its
   partition. Patched: the sorted list, and the partitions of the table and of each
   index (already in the order moto sorts them into), are computed once and kept until
   the table is written again; a Query is handed only the items of its partition.
2. A Scan resumed from ``ExclusiveStartKey`` compares every item before that key with
   it, building fresh ``DynamoType`` objects each time: paging a Scan is quadratic.
   Patched: the Scan is handed the items after that key (binary search).
3. Every key comparison goes through ``DynamoType.cast_value`` (five type checks).
   Patched: strings, binaries and numbers skip the checks for the other types.
4. ``LimitedSizeDict`` re-sums an item's size at each attribute it stores: building an
   item is quadratic in its attribute count. Patched: the size is checked once.
5. A Query computes the size of every item it passes on the way to its range (~20 µs
   each), so a page deep in a partition costs O(partition). Patched: an item's size
   is computed once and kept until an update changes the item.

6. ``transact_write_items`` deep-copies whole tables to roll back: seeding cost grows
   with the table. Patched in :mod:`scripts.moto_patches` (the emulator uses it too):
   only the items the transaction touches are copied.

moto's own query and scan code still runs, on that smaller list, so items, order,
``ScannedCount`` and ``LastEvaluatedKey`` are what moto computes without the patches:
``tests/unit/test_bench.py`` runs the listing benchmark with and without them and
compares every figure but time, and every benchmark run checks the service's pages
against the Scan baseline and the generated data.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from unittest import mock

from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize

from scripts.moto_patches import item_level_rollback

#: moto's item size limit (``LimitedSizeDict.__setitem__``), bytes.
_MOTO_ITEM_LIMIT = 405_000
#: Per-table state, kept in the Table's ``__dict__`` (gone with the table).
_SORTED = "_bench_sorted"
_BY_INDEX_KEY = "_bench_by_index_key"
_ONLY = "_bench_only"
#: Per-item state, in the Item's ``__dict__`` (a deep copy does not carry it).
_SIZE = "_bench_size"


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    """Patch moto's DynamoDB for the duration of the ``with`` block (see module doc)."""
    original_cast = DynamoType.cast_value.fget  # type: ignore[attr-defined]
    original_all_items = Table.all_items
    original_put = Table.put_item
    original_delete = Table.delete_item
    original_query = Table.query
    original_scan = Table.scan
    original_update = DynamoDBBackend.update_item
    original_size = Item.size

    def cast_value(self: DynamoType) -> Any:
        kind = self.type
        if kind == "S" or kind == "B":
            return self.value
        if kind == "N":
            return Decimal(self.value)
        return original_cast(self)

    def item_init(
        self: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]
    ) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        values = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(values)
        for key, value in attrs.items():
            dict.__setitem__(values, key, DynamoType(value))
        if sum(bytesize(key) + value.size() for key, value in values.items()) > _MOTO_ITEM_LIMIT:
            raise ItemSizeTooLarge
        self.attrs = values

    def sorted_items(table: Table) -> tuple[Any, list[Item], list[tuple[Any, ...]] | None]:
        cached = table.__dict__.get(_SORTED)
        if cached is None or cached[0] is not table.items:
            cached = (table.items, original_all_items(table), None)
            table.__dict__[_SORTED] = cached
        return cached

    def all_items(self: Table) -> list[Item]:
        only = self.__dict__.get(_ONLY)
        if only is not None:
            return list(only)
        return list(sorted_items(self)[1])

    def forget(table: Table) -> None:
        table.__dict__.pop(_SORTED, None)
        table.__dict__.pop(_BY_INDEX_KEY, None)

    def put_item(self: Table, *args: Any, **kwargs: Any) -> Item:
        forget(self)
        return original_put(self, *args, **kwargs)

    def delete_item(self: Table, *args: Any, **kwargs: Any) -> Item | None:
        forget(self)
        return original_delete(self, *args, **kwargs)

    def update_item(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Item:
        # An update changes an item in place: its size, maybe an index key attribute.
        table = self.get_table(table_name)
        forget(table)
        try:
            item: Item = original_update(self, table_name, *args, **kwargs)
        except BaseException:
            for stale in original_all_items(table):
                stale.__dict__.pop(_SIZE, None)
            raise
        item.__dict__.pop(_SIZE, None)
        return item

    def item_size(self: Item) -> int:
        size = self.__dict__.get(_SIZE)
        if size is None:
            size = self.__dict__[_SIZE] = original_size(self)
        return size

    def partitions(
        table: Table, index_name: str | None
    ) -> dict[tuple[str, Any], list[Item]] | None:
        """The table's (``index_name`` None) or the index's partitions, each in the order
        moto sorts a Query's candidates, keyed by ``(type, value)`` of the partition key;
        only items with every key attribute of the index. None for key schemas this
        does not handle (moto then reads the whole table, as it would)."""
        items_ref, items, _ = sorted_items(table)
        cached = table.__dict__.get(_BY_INDEX_KEY)
        if cached is None or cached[0] is not items_ref:
            cached = (items_ref, {})
            table.__dict__[_BY_INDEX_KEY] = cached
        known: dict[str | None, dict[tuple[str, Any], list[Item]] | None] = cached[1]
        if index_name in known:
            return known[index_name]
        grouped: dict[tuple[str, Any], list[Item]] = {}
        handled = True
        if index_name is None:
            # all_items is sorted by (hash key, range key): each group is in range order.
            for item in items:
                key = (item.hash_key.type, item.hash_key.cast_value)
                grouped.setdefault(key, []).append(item)
        else:
            schema = table.get_index(index_name).schema
            hashes = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
            ranges = [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
            handled = len(hashes) == 1 and len(ranges) <= 1
            for item in items if handled else ():
                value = item.attrs.get(hashes[0])
                if value is None or not all(item.attrs.get(r) for r in ranges):
                    continue
                grouped.setdefault((value.type, value.cast_value), []).append(item)
            for group in grouped.values():
                # Stable: (index range key, table hash key, table range key), as moto.
                group.sort(key=lambda item: [item.attrs[r].cast_value for r in ranges])
        known[index_name] = grouped if handled else None
        return known[index_name]

    def partition(
        table: Table,
        hash_key: DynamoType | None,
        index_name: str | None,
        hash_key_conditions: list[tuple[str, DynamoType]] | None,
    ) -> list[Item] | None:
        """The items a Query can match, or None when unsure (moto then reads all)."""
        if index_name is None:
            if hash_key is None or table.range_key_attr is None:
                return None
            value = hash_key
        else:
            if not hash_key_conditions or len(hash_key_conditions) != 1:
                return None
            name, value = hash_key_conditions[0]
            schema = table.get_index(index_name).schema
            if [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"] != [name]:
                return None
        if value.type not in ("S", "N", "B"):
            return None
        groups = partitions(table, index_name)
        if groups is None:
            return None
        return list(groups.get((value.type, value.cast_value), []))

    def query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        only = partition(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
        if only is None:
            return original_query(self, hash_key, *args, **kwargs)
        self.__dict__[_ONLY] = only
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.__dict__[_ONLY]

    def scan(
        self: Table,
        filters: dict[str, Any],
        limit: int,
        exclusive_start_key: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        index_name = kwargs.get("index_name", args[1] if len(args) > 1 else None)
        segments = kwargs.get("segments", args[4] if len(args) > 4 else (None, None))
        if not exclusive_start_key or index_name or tuple(segments) != (None, None):
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        items_ref, items, keys = sorted_items(self)
        if keys is None:
            keys = [_key(item.hash_key, item.range_key) for item in items]
            self.__dict__[_SORTED] = (items_ref, items, keys)
        start = _key(
            DynamoType(exclusive_start_key[self.hash_key_attr]),
            DynamoType(exclusive_start_key[self.range_key_attr]) if self.range_key_attr else None,
        )
        self.__dict__[_ONLY] = items[bisect.bisect_right(keys, start) :]
        try:
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        finally:
            del self.__dict__[_ONLY]

    with contextlib.ExitStack() as patches:
        patches.enter_context(item_level_rollback())
        for target, name, replacement in (
            (DynamoType, "cast_value", property(cast_value)),
            (Item, "__init__", item_init),
            (Table, "all_items", all_items),
            (Table, "put_item", put_item),
            (Table, "delete_item", delete_item),
            (Table, "query", query),
            (Table, "scan", scan),
            (DynamoDBBackend, "update_item", update_item),
            (Item, "size", item_size),
        ):
            patches.enter_context(mock.patch.object(target, name, replacement))
        yield


def _key(hash_key: DynamoType, range_key: DynamoType | None) -> tuple[Any, ...]:
    """An item's position in ``Table.all_items`` order, as plain comparable values."""
    if range_key is None:
        return (hash_key.cast_value,)
    return (hash_key.cast_value, range_key.cast_value)
