"""`make bench`: what a listing page costs, per strategy, against a Scan-and-filter baseline.

Seeds moto's in-process DynamoDB and S3 with images spread over 12 months, 20 users and
30 tags, then for each kind of listing measures, in this one run:

- items DynamoDB read (``ScannedCount``) per item returned: the design's claim is ~1;
- time of one page through the service, and the same filter done the naive way (one
  Scan of the whole table with a FilterExpression), as a ratio scan / service.

Numbers are ratios within one run on one machine, not absolute targets; nothing asserts.
Usage: ``python -m benchmarks.listing [--images 300] [--limit 20] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto import mock_aws
from PIL import Image

from chalicelib.config import Settings
from chalicelib.schema import create_table
from chalicelib.service import ImageService
from chalicelib.validation import UploadRequest, normalize_tags, parse_list_query

BUCKET = TABLE = "bench-images"


def tiny_png() -> bytes:
    """A 1x1 PNG: the benchmark is about metadata, not decoding."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    return buffer.getvalue()


class SteppingClock:
    """Goes back 13 hours at each call, so the images spread over many months."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now -= timedelta(hours=13)
        return self.now


def seed(service: ImageService, images: int) -> None:
    """Upload ``images`` images through the service (bytes to S3, items to DynamoDB)."""
    png = tiny_png()
    for number in range(images):
        service.upload(
            UploadRequest(
                data=png,
                image_field="file",
                filename="p.png",
                declared_content_type=None,
                content_type_field="file",
                user_id=f"user{number % 20}",
                title=f"{'sunset' if number % 7 == 0 else 'photo'} {number}",
                description="",
                tags=normalize_tags(
                    f"tag{number % 30},tag{(number * 7) % 30}" if number % 30 else ""
                ),
                metadata={},
            )
        )


def timed(action: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` runs of ``action``."""
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def scan_count(client: Any, expression: str, values: dict[str, Any]) -> tuple[int, int]:
    """The naive baseline: Scan everything with a filter; (items read, items matched)."""
    read = matched = 0
    for page in client.get_paginator("scan").paginate(
        TableName=TABLE, FilterExpression=expression, ExpressionAttributeValues=values
    ):
        read += page["ScannedCount"]
        matched += page["Count"]
    return read, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    with mock_aws():
        settings = Settings(bucket_name=BUCKET, table_name=TABLE, token_secret="b" * 32)
        wired = ImageService.from_settings(settings)
        service = ImageService(wired.storage, wired.metadata, settings, clock=SteppingClock())
        service.storage.create_bucket()
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, TABLE)
        seed(service, args.images)

        scanned: list[int] = []
        service.metadata._dynamodb.meta.events.register(
            "after-call.dynamodb.Query",
            lambda parsed, **_: scanned.append(parsed.get("ScannedCount", 0)),
        )
        image_filter = "sk = :meta"
        meta = {":meta": {"S": "META"}}
        cases = [
            ("feed (no filter)", "", image_filter, meta),
            (
                "user",
                "user_id=user3",
                f"{image_filter} AND user_id = :u",
                {**meta, ":u": {"S": "user3"}},
            ),
            (
                "tag",
                "tag=tag7",
                f"{image_filter} AND contains(tags, :t)",
                {**meta, ":t": {"S": "tag7"}},
            ),
            (
                "date range",
                "date_range=2026-06-01,2026-06-30",
                f"{image_filter} AND created_at BETWEEN :a AND :b",
                {**meta, ":a": {"S": "2026-06-01"}, ":b": {"S": "2026-06-30T23:59:59.999Z"}},
            ),
            (
                "title",
                "title=sunset",
                f"{image_filter} AND contains(title_lower, :s)",
                {**meta, ":s": {"S": "sunset"}},
            ),
        ]
        print(f"{args.images} images, page size {args.limit}, median of {args.repeat} runs\n")
        print(
            f"{'listing':<18}{'returned':>9}{'read':>7}{'read/ret':>10}"
            f"{'scan read':>11}{'scan/service time':>19}"
        )
        for name, query_string, expression, values in cases:
            params = {k: [v] for k, v in (p.split("=") for p in query_string.split("&") if p)}
            query = parse_list_query({**params, "limit": [str(args.limit)]})
            scanned.clear()
            page = service.list_images(query)
            read = sum(scanned)
            service_time = timed(lambda query=query: service.list_images(query), args.repeat)
            scan_time = timed(
                lambda e=expression, v=values: scan_count(dynamodb, e, v), args.repeat
            )
            scan_read, _ = scan_count(dynamodb, expression, values)
            print(
                f"{name:<18}{page['count']:>9}{read:>7}{read / max(page['count'], 1):>10.2f}"
                f"{scan_read:>11}{scan_time / service_time:>19.1f}"
            )


if __name__ == "__main__":
    main()
