"""The emulator's transaction rollback (``scripts/moto_patches.py``): all or nothing, as
moto and DynamoDB, without copying the table."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.table import Table

from chalicelib.schema import create_table
from scripts.moto_patches import item_level_rollback

TABLE = "rollback"


def s(value: str) -> dict[str, str]:
    return {"S": value}


def image(number: int, user: str, title: str) -> dict[str, Any]:
    return {
        "pk": s(f"IMAGE#{number}"),
        "sk": s("META"),
        "gsi1pk": s(f"USER#{user}"),
        "gsi1sk": s(f"2026-01-0{number}#{number}"),
        "title": s(title),
    }


@pytest.fixture
def dynamodb(aws: None) -> Iterator[Any]:
    client = boto3.client("dynamodb")
    create_table(client, TABLE)
    for number, user in ((1, "ann"), (2, "ann"), (3, "bob"), (8, "bob")):
        client.put_item(TableName=TABLE, Item=image(number, user, f"t{number}"))
    with item_level_rollback():
        yield client


def state(client: Any) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Every item of the table, and GSI1's partitions (ids in index order)."""
    items = sorted(
        client.scan(TableName=TABLE)["Items"], key=lambda item: (item["pk"]["S"], item["sk"]["S"])
    )
    users = {}
    for user in ("ann", "bob", "cat"):
        found = client.query(
            TableName=TABLE,
            IndexName="GSI1",
            KeyConditionExpression="gsi1pk = :u",
            ExpressionAttributeValues={":u": s(f"USER#{user}")},
        )["Items"]
        users[user] = [item["pk"]["S"] for item in found]
    return items, users


def key(number: int) -> dict[str, Any]:
    return {"pk": s(f"IMAGE#{number}"), "sk": s("META")}


def every_kind_then(last: dict[str, Any]) -> list[dict[str, Any]]:
    """An update that moves an image between GSI partitions, a delete, a put of a new
    item, an overwrite, a passing condition check, then ``last``."""
    return [
        {
            "Update": {
                "TableName": TABLE,
                "Key": key(1),
                "UpdateExpression": "SET gsi1pk = :u, title = :t",
                "ExpressionAttributeValues": {":u": s("USER#cat"), ":t": s("changed")},
            }
        },
        {"Delete": {"TableName": TABLE, "Key": key(2)}},
        {"Put": {"TableName": TABLE, "Item": image(4, "cat", "new")}},
        {"Put": {"TableName": TABLE, "Item": image(3, "cat", "overwritten")}},
        {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": key(8),
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
        last,
    ]


FAILING_CHECK = {
    "ConditionCheck": {
        "TableName": TABLE,
        "Key": key(9),
        "ConditionExpression": "attribute_exists(pk)",
    }
}


def test_a_failing_last_condition_leaves_every_item_and_index_as_before(dynamodb: Any) -> None:
    before = state(dynamodb)
    with pytest.raises(ClientError) as error:
        dynamodb.transact_write_items(TransactItems=every_kind_then(FAILING_CHECK))
    assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in error.value.response["CancellationReasons"]]
    assert reasons == ["None"] * 5 + ["ConditionalCheckFailed"]
    assert state(dynamodb) == before


@pytest.mark.parametrize(
    "last",
    [
        {  # a conditional put
            "Put": {
                "TableName": TABLE,
                "Item": image(5, "bob", "x"),
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
        {  # a conditional delete
            "Delete": {
                "TableName": TABLE,
                "Key": key(9),
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
        {  # a conditional update
            "Update": {
                "TableName": TABLE,
                "Key": key(9),
                "UpdateExpression": "SET title = :t",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":t": s("x")},
            }
        },
    ],
    ids=["put", "delete", "update"],
)
def test_every_failing_operation_kind_rolls_back(dynamodb: Any, last: dict[str, Any]) -> None:
    before = state(dynamodb)
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(TransactItems=every_kind_then(last))
    assert state(dynamodb) == before


def test_a_validation_error_rolls_back_too(dynamodb: Any) -> None:
    before = state(dynamodb)
    twice = {"Delete": {"TableName": TABLE, "Key": key(1)}}  # key 1 is updated first
    with pytest.raises(ClientError, match="ValidationException"):
        dynamodb.transact_write_items(TransactItems=every_kind_then(twice))
    assert state(dynamodb) == before


def test_a_passing_transaction_commits_all_of_it(dynamodb: Any) -> None:
    passing = {"Put": {"TableName": TABLE, "Item": image(5, "ann", "five")}}
    dynamodb.transact_write_items(TransactItems=every_kind_then(passing))
    items, users = state(dynamodb)
    assert [item["pk"]["S"] for item in items] == [f"IMAGE#{n}" for n in (1, 3, 4, 5, 8)]
    assert items[0]["title"] == s("changed")
    assert items[1]["title"] == s("overwritten")
    assert users == {
        "ann": ["IMAGE#5"],
        "bob": ["IMAGE#8"],
        "cat": ["IMAGE#1", "IMAGE#3", "IMAGE#4"],
    }


def test_no_table_is_copied(dynamodb: Any) -> None:
    """The point of the patch: a transaction's cost does not depend on the table's size."""
    real = copy.deepcopy
    with mock.patch("copy.deepcopy", side_effect=real) as spy:
        with pytest.raises(ClientError):
            dynamodb.transact_write_items(TransactItems=every_kind_then(FAILING_CHECK))
        dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": image(6, "ann", "y")}}]
        )
    assert spy.call_count > 0  # the touched items are copied
    assert not any(isinstance(call.args[0], Table) for call in spy.call_args_list)
