"""`make bench` at a tiny size: the report has every row, and moto's speedups change
nothing but time. No assertion on timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.listing import choose_patterns
from bench.run import main

PATTERNS = [
    "by user",
    "by tag",
    "by two tags",
    "by user + date range",
    "by tag + date range",
    "date range only",
    "no filter",
    "title search",
    "title + user",
]
# Imaging: tests/unit/test_bench_imaging.py; the library: tests/unit/test_bench_library.py.
TINY = ["--users", "10", "--tags", "8", "--skip-imaging", "--skip-scale", "--library-images", "0"]


def run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """Run the benchmark's main into ``tmp_path``; the JSON it wrote."""
    status = main([*TINY, *extra, "--out-dir", str(tmp_path)])
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert status == 0 or any(not t["passed"] for t in results["targets"]), results["problems"]
    return results


def without_times(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listing rows minus everything measured in seconds."""
    timeless = []
    for row in listing:
        row = {k: v for k, v in row.items() if k != "time_ratio"}
        for side in ("service", "baseline"):
            row[side] = {k: v for k, v in row[side].items() if "_ms" not in k}
        timeless.append(row)
    return timeless


def test_bench_writes_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run(
        tmp_path,
        *("--images", "200", "--upload-runs", "1", "--cold-start-runs", "1", "--skip-package"),
        *("--direct-upload-smoke", "--direct-upload-runs", "1"),
    )

    markdown = (tmp_path / "results.md").read_text()
    assert capsys.readouterr().out.strip() == markdown.strip()
    assert results["problems"] == []
    assert results["scans_in_request_path"] == 0
    assert [row["pattern"] for row in results["listing"]] == PATTERNS
    for name in PATTERNS:
        assert f"| {name} |" in markdown
    for row in results["listing"]:
        assert row["baseline"]["read"] == 200  # the Scan reads the whole table
    assert [u["label"] for u in results["upload"]] == ["100 KB", "1 MB", "5 MB"]
    for label in ("| 100 KB |", "| 1 MB |", "| 5 MB |", "## Cold start", "## Targets"):
        assert label in markdown
    assert "deployment.zip`: skipped" in markdown
    assert [u["label"] for u in results["direct_upload"]] == ["20 KB", "100 KB"]
    assert "## Direct uploads" in markdown and "| 100 KB | " in markdown
    assert results["cold_start"]["import_app_ms_median"] > 0


def test_moto_speedups_change_nothing_but_time(tmp_path: Path) -> None:
    # Small pages, so that every listing and the Scan resume many times.
    listing_only = ["--images", "120", "--limit", "4", "--skip-upload", "--skip-cold-start"]
    fast = run(tmp_path / "fast", *listing_only)
    plain = run(tmp_path / "plain", *listing_only, "--no-moto-speedups")

    assert fast["problems"] == plain["problems"] == []
    assert without_times(fast["listing"]) == without_times(plain["listing"])


def test_patterns_are_deterministic_and_non_trivial() -> None:
    from bench.dataset import DatasetSpec, generate

    records = generate(DatasetSpec(images=500, seed=7))
    first = choose_patterns(records, 24)
    assert first == choose_patterns(generate(DatasetSpec(images=500, seed=7)), 24)
    assert [p.name for p in first] == PATTERNS
    assert len(first[2].params["tags"].split(",")) == 2


def test_moto_speedups_see_an_index_key_moved_by_an_update(aws: None) -> None:
    import boto3

    from bench.moto_speedups import faster_moto
    from chalicelib.schema import create_table

    dynamodb = boto3.client("dynamodb")
    create_table(dynamodb, "t")

    def users_of(user: str) -> list[str]:
        found = dynamodb.query(
            TableName="t",
            IndexName="GSI1",
            KeyConditionExpression="gsi1pk = :u",
            ExpressionAttributeValues={":u": {"S": user}},
        )
        return [item["pk"]["S"] for item in found["Items"]]

    with faster_moto():
        for number in range(3):
            item = {
                "pk": f"IMAGE#{number}",
                "sk": "META",
                "gsi1pk": "USER#a",
                "gsi1sk": f"{number}",
            }
            dynamodb.put_item(TableName="t", Item={k: {"S": v} for k, v in item.items()})
        assert users_of("USER#a") == ["IMAGE#0", "IMAGE#1", "IMAGE#2"]
        dynamodb.update_item(
            TableName="t",
            Key={"pk": {"S": "IMAGE#1"}, "sk": {"S": "META"}},
            UpdateExpression="SET gsi1pk = :b",
            ExpressionAttributeValues={":b": {"S": "USER#b"}},
        )
        assert users_of("USER#a") == ["IMAGE#0", "IMAGE#2"]
        assert users_of("USER#b") == ["IMAGE#1"]
