"""The DynamoDB table schema: the one definition the code creates tables from.

`infra/dynamodb.tf` declares the same table for Terraform; `tests/unit/test_schema.py`
parses that file and fails if the two differ, so `make run` (moto) and `make deploy`
(LocalStack / AWS) always get the same keys and indexes.

Key layout (single table; the README's "Data model" explains the access patterns; the
key values are built by ``chalicelib/keys.py``, which also shards them: ``#{shard}``
below is absent when the partition kind's shard count is 1):

- image: ``pk = IMAGE#{image_id}``, ``sk = META``;
  GSI1 ``gsi1pk = USER#{user_id}``, ``gsi1sk = {created_at}#{image_id}``;
  GSI2 ``gsi2pk = FEED#{yyyy-mm}#{shard}``, ``gsi2sk = {created_at}#{image_id}``;
  ``shards`` holds the shard counts its keys were written with.
- tag membership: ``pk = TAG#{tag}#{shard}`` for each tag and ``pk = TAG#{a}+{b}#{shard}``
  for each pair of tags (``a < b``), ``sk = {created_at}#{image_id}``.
- feed month marker: ``pk = FEEDMONTHS``, ``sk = {yyyy-mm}``.
- direct upload: ``pk = UPLOAD#{upload_id}``, ``sk = META``; its :data:`TTL_ATTRIBUTE`
  (epoch seconds) lets DynamoDB expire a pending upload that never completed.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
SORT_KEY = "sk"
GSI1_NAME = "GSI1"
GSI1_PARTITION_KEY = "gsi1pk"
GSI1_SORT_KEY = "gsi1sk"
GSI2_NAME = "GSI2"
GSI2_PARTITION_KEY = "gsi2pk"
GSI2_SORT_KEY = "gsi2sk"
#: The table's TimeToLive attribute: epoch seconds after which DynamoDB may delete the item.
TTL_ATTRIBUTE = "expires_at_epoch"


def _gsi(name: str, partition_key: str, sort_key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": partition_key, "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def table_definition(table_name: str) -> dict[str, Any]:
    """Keyword arguments for ``dynamodb.create_table`` (on-demand billing).

    Shape: ``{"TableName", "KeySchema", "AttributeDefinitions",
    "GlobalSecondaryIndexes", "BillingMode"}``; every key attribute is a string (``S``).
    """
    key_attributes = [
        PARTITION_KEY,
        SORT_KEY,
        GSI1_PARTITION_KEY,
        GSI1_SORT_KEY,
        GSI2_PARTITION_KEY,
        GSI2_SORT_KEY,
    ]
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in key_attributes
        ],
        "GlobalSecondaryIndexes": [
            _gsi(GSI1_NAME, GSI1_PARTITION_KEY, GSI1_SORT_KEY),
            _gsi(GSI2_NAME, GSI2_PARTITION_KEY, GSI2_SORT_KEY),
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def create_table(dynamodb: Any, table_name: str) -> None:
    """Create the table from :func:`table_definition` and wait until it is ACTIVE.

    ``dynamodb`` is a boto3 DynamoDB client. An existing table is left as it is, so
    this is safe to call at every ``make run``. Used by local tooling and tests only:
    deployed stacks get their table from Terraform.
    """
    try:
        dynamodb.create_table(**table_definition(table_name))
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
