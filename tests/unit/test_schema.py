"""One schema source: the Terraform table in infra/ must equal chalicelib.schema's.

`make run` and the tests create the table from ``table_definition()``; deploys get it from
``infra/dynamodb.tf``. This parses the Terraform with python-hcl2, turns the
``aws_dynamodb_table`` resource into ``create_table`` keyword arguments, and compares.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from chalicelib.schema import TTL_ATTRIBUTE, create_table, table_definition

INFRA = Path(__file__).resolve().parents[2] / "infra"
_HCL_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)


def terraform_resources(resource_type: str) -> dict[str, dict[str, Any]]:
    """Every ``resource_type`` resource declared in ``infra/*.tf``, by resource name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        for block in parsed.get("resource", []):
            found.update(block.get(resource_type, {}))
    return found


def _key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _index(block: dict[str, Any]) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": block["projection_type"]}
    if block.get("non_key_attributes"):
        projection["NonKeyAttributes"] = sorted(block["non_key_attributes"])
    return {
        "IndexName": block["name"],
        "KeySchema": _key_schema(block["hash_key"], block.get("range_key")),
        "Projection": projection,
    }


def terraform_table_as_definition(resource: dict[str, Any]) -> dict[str, Any]:
    """An ``aws_dynamodb_table`` (as python-hcl2 parses it) as ``create_table`` kwargs.

    Shape: like :func:`chalicelib.schema.table_definition` without ``TableName``,
    attribute definitions and indexes sorted by name so order does not matter.
    """
    definition: dict[str, Any] = {
        "KeySchema": _key_schema(resource["hash_key"], resource.get("range_key")),
        "AttributeDefinitions": sorted(
            (
                {"AttributeName": a["name"], "AttributeType": a["type"]}
                for a in resource.get("attribute", [])
            ),
            key=lambda a: a["AttributeName"],
        ),
        "BillingMode": resource.get("billing_mode", "PROVISIONED"),
    }
    for block, key in (
        ("global_secondary_index", "GlobalSecondaryIndexes"),
        ("local_secondary_index", "LocalSecondaryIndexes"),
    ):
        if resource.get(block):
            definition[key] = sorted(
                (_index(index) for index in resource[block]), key=lambda i: i["IndexName"]
            )
    return definition


def code_definition() -> dict[str, Any]:
    """``table_definition()`` normalised like :func:`terraform_table_as_definition`."""
    definition = copy.deepcopy(table_definition("ignored"))
    del definition["TableName"]
    definition["AttributeDefinitions"].sort(key=lambda a: a["AttributeName"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in definition:
            definition[key].sort(key=lambda i: i["IndexName"])
    return definition


@pytest.fixture(scope="module")
def terraform_table() -> dict[str, Any]:
    tables = terraform_resources("aws_dynamodb_table")
    assert len(tables) == 1, f"expected one aws_dynamodb_table in infra/, found {sorted(tables)}"
    return next(iter(tables.values()))


def test_terraform_table_matches_code_schema(terraform_table: dict[str, Any]) -> None:
    assert terraform_table_as_definition(terraform_table) == code_definition()


def test_comparison_notices_a_changed_index_key(terraform_table: dict[str, Any]) -> None:
    changed = copy.deepcopy(terraform_table)
    changed["global_secondary_index"][0]["range_key"] = "created_at"
    assert terraform_table_as_definition(changed) != code_definition()


def test_comparison_notices_a_missing_attribute(terraform_table: dict[str, Any]) -> None:
    changed = copy.deepcopy(terraform_table)
    changed["attribute"] = changed["attribute"][:-1]
    assert terraform_table_as_definition(changed) != code_definition()


def test_comparison_notices_projection_and_billing(terraform_table: dict[str, Any]) -> None:
    changed = copy.deepcopy(terraform_table)
    changed["global_secondary_index"][1]["projection_type"] = "KEYS_ONLY"
    assert terraform_table_as_definition(changed) != code_definition()
    changed = copy.deepcopy(terraform_table)
    changed["billing_mode"] = "PROVISIONED"
    assert terraform_table_as_definition(changed) != code_definition()


def test_table_has_point_in_time_recovery_and_encryption(
    terraform_table: dict[str, Any],
) -> None:
    assert terraform_table["point_in_time_recovery"] == [{"enabled": True}]
    assert terraform_table["server_side_encryption"][0]["enabled"] is True


def terraform_ttl(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The table's ``ttl`` block as ``update_time_to_live``'s ``TimeToLiveSpecification``."""
    blocks = resource.get("ttl") or []
    if not blocks:
        return None
    (ttl,) = blocks
    return {"Enabled": bool(ttl.get("enabled", True)), "AttributeName": ttl["attribute_name"]}


def code_ttl() -> dict[str, Any]:
    """The TTL :func:`chalicelib.schema.create_table` enables, as it calls DynamoDB."""
    calls: list[dict[str, Any]] = []

    class Recorder:
        class exceptions:  # boto3's attribute name
            ResourceInUseException = RuntimeError

        def create_table(self, **kwargs: Any) -> None:
            pass

        def get_waiter(self, name: str) -> Any:
            return self

        def wait(self, **kwargs: Any) -> None:
            pass

        def update_time_to_live(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    create_table(Recorder(), "ignored")
    (call,) = calls
    specification: dict[str, Any] = call["TimeToLiveSpecification"]
    return specification


def test_terraform_table_expires_items_like_the_code(terraform_table: dict[str, Any]) -> None:
    assert terraform_ttl(terraform_table) == code_ttl()
    assert code_ttl() == {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}


def test_ttl_comparison_notices_another_attribute(terraform_table: dict[str, Any]) -> None:
    changed = copy.deepcopy(terraform_table)
    changed["ttl"] = [{"attribute_name": "expires_at", "enabled": True}]
    assert terraform_ttl(changed) != code_ttl()
    del changed["ttl"]
    assert terraform_ttl(changed) is None
