"""Find and remove orphans between the bucket and the table (``make reconcile``).

Requests never leave orphans on purpose, but one failure mode is accepted by design:
a delete removes metadata first, and if the following S3 delete fails the object stays
behind (logged). This command sweeps both directions:

- orphan objects: keys under ``images/`` that no image record points at, older than a
  grace period (an upload in flight has its object before its metadata);
- orphan records: image records whose object is missing (they and their tag items are
  deleted, so listings never hand out dead URLs).

It Scans the table, which is why it is a command and not a request path.
Usage: ``python -m chalicelib.reconcile [--apply] [--grace-minutes 15]``; without
``--apply`` it only reports. Output is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from chalicelib.config import Settings
from chalicelib.service import ImageService

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What was found (and, with ``applied``, removed): S3 keys and image ids."""

    orphan_objects: list[str] = field(default_factory=list)
    orphan_records: list[str] = field(default_factory=list)
    applied: bool = False


def reconcile(
    service: ImageService,
    apply: bool,
    grace: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> ReconcileReport:
    """Find orphans both ways; with ``apply``, delete them.

    Args:
        service: the wired service (its storage and metadata are used directly).
        apply: delete what is found; otherwise only report.
        grace: objects younger than this are never orphans (uploads in flight).
        now: the current time (tests pass a fixed one).
    """
    now = now or datetime.now(UTC)
    records = {record.s3_key: record for record in service.metadata.scan_images()}
    report = ReconcileReport(applied=apply)
    for key, last_modified in service.storage.iter_objects():
        if key not in records and now - last_modified >= grace:
            report.orphan_objects.append(key)
    for record in records.values():
        if not service.storage.exists(record.s3_key):
            report.orphan_records.append(record.image_id)
    if apply:
        for key in report.orphan_objects:
            service.storage.delete(key)
        for key, record in records.items():
            if record.image_id in report.orphan_records:
                logger.info("deleting metadata of %s: object %s is missing", record.image_id, key)
                service.metadata.delete_image(record, owner=None)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; settings come from the environment like the Lambda's."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apply", action="store_true", help="delete the orphans found")
    parser.add_argument(
        "--grace-minutes",
        type=float,
        default=15.0,
        help="ignore objects younger than this (default 15)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    service = ImageService.from_settings(Settings.from_env())
    report = reconcile(service, apply=args.apply, grace=timedelta(minutes=args.grace_minutes))
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
