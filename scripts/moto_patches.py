"""A transaction rollback for moto's DynamoDB that copies only the items it touches.

Why: moto 5.2.5's ``DynamoDBBackend.transact_write_items`` deep-copies every table a
transaction names *before* applying it, so it can put the copy back when an operation
fails. Each upload (one transaction: the image item and its tag items) therefore costs
time and memory proportional to everything stored before it: ``make run``'s emulator
grew from 88 MB to 4.1 GB after ~180 uploads and then answered 503s.

What :func:`item_level_rollback` does instead, keeping moto's all-or-nothing semantics:

1. Before moto runs the transaction, it snapshots the items the transaction names (at
   most 100: one per operation, keyed by table, hash and range key), each as its
   DynamoDB JSON, or "absent".
2. moto's own code runs unchanged, except that its ``copy.deepcopy`` of a ``Table``
   returns the table itself, so moto's own "rollback" (putting the table back) is a
   no-op.
3. When moto raises (a condition failed, a validation error, a duplicate key), every
   snapshotted item is written back through the table's own ``put_item`` /
   ``delete_item``. Indexes are computed from the items, so the GSIs roll back with them.

Only items named by the transaction can change, so restoring them restores the table.
One difference from moto: a table's stream (unused here) keeps the records of a
rolled-back transaction. ``tests/unit/test_moto_patches.py`` proves the semantics;
the README's notes describe the fix for upstream.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

#: One touched item: its table, key values, and its attributes before (None: absent).
Snapshot = tuple[Table, DynamoType, DynamoType | None, dict[str, Any] | None]


def _deepcopy_sharing_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy``, except that a moto ``Table`` is returned as is."""
    if isinstance(value, Table):
        return value
    return copy.deepcopy(value, memo)


def snapshot(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[Snapshot]:
    """The current state of every item ``transact_items`` names (a TransactItems list in
    DynamoDB JSON, as the API receives it), one entry per distinct key.

    An operation naming an unknown table or a malformed key is skipped: moto fails it
    without writing anything.
    """
    taken: dict[tuple[str, Any, Any], Snapshot] = {}
    for entry in transact_items[:100]:
        for op_type, op in entry.items():
            table = backend.tables.get(op.get("TableName", ""))
            if table is None:
                continue
            key = op.get("Item" if op_type == "Put" else "Key") or {}
            try:
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = (
                    DynamoType(key[table.range_key_attr])
                    if table.range_key_attr is not None
                    else None
                )
            except (KeyError, TypeError, AttributeError, IndexError, ValueError):
                continue
            name = (table.name, hash_key, range_key)
            if name in taken:
                continue
            current: Item | None
            if range_key is None:
                current = table.items.get(hash_key)  # type: ignore[assignment]
            else:
                current = table.items.get(hash_key, {}).get(range_key)
            before = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            taken[name] = (table, hash_key, range_key, before)
    return list(taken.values())


def restore(snapshots: list[Snapshot]) -> None:
    """Put every snapshotted item back as it was (absent ones deleted)."""
    for table, hash_key, range_key, before in snapshots:
        if before is None:
            table.delete_item(hash_key, range_key)
        else:
            table.put_item(before, overwrite=True)


@contextlib.contextmanager
def item_level_rollback() -> Iterator[None]:
    """Patch moto's ``transact_write_items`` for the ``with`` block (see module doc).

    Used by the emulator (:func:`scripts.emulator.serve`) and the benchmark
    (:func:`bench.moto_speedups.faster_moto`).
    """
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        before = snapshot(self, transact_items)
        try:
            original(self, transact_items)
        except BaseException:
            restore(before)
            raise

    sharing_copy = SimpleNamespace(deepcopy=_deepcopy_sharing_tables, copy=copy.copy)
    with (
        mock.patch.object(dynamodb_models, "copy", sharing_copy),
        mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items),
    ):
        yield
