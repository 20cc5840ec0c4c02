"""Find and remove orphans between the bucket and the table (``make reconcile``).

Requests never leave orphans on purpose, but a few failures can: a delete whose S3
delete fails after the metadata is gone, an upload whose metadata write failed and whose
undo failed too, a Lambda killed between two steps, or anything written by hand. Three
kinds are found:

- orphan objects: keys under ``images/`` that no image record points at, older than a
  grace period (an upload in flight has its object before its metadata);
- orphan records: image records whose object is missing (listings would hand out dead
  URLs);
- orphan memberships: items under a ``TAG#`` partition (one tag or a pair) whose image
  item does not exist.

Each candidate is checked again with a direct read before it is reported, so a request
racing with the Scan (an upload or delete between the Scan and the bucket listing) is
not mistaken for an orphan. With ``--fix``: orphan objects are deleted; orphan records
are deleted with their memberships (the transaction a user's delete runs, without the
owner condition); orphan memberships are deleted one by one, each in a transaction that
checks its image is still absent.

It Scans the table, which is why it is a command and not a request path.
Usage: ``python -m chalicelib.reconcile [--fix] [--grace-minutes 15]``; without
``--fix`` it only reports. Output is one JSON object on stdout::

    {"orphan_objects": ["images/<id>.png", ...], "orphan_records": ["<image id>", ...],
     "orphan_memberships": [{"pk": "TAG#cat", "sk": "<created_at>#<id>", "image_id": "<id>"}],
     "fixed": false}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from chalicelib.config import Settings
from chalicelib.errors import ImageNotFoundError
from chalicelib.service import ImageService

logger = logging.getLogger(__name__)

#: Objects younger than this are never orphans: their upload may still be writing metadata.
DEFAULT_GRACE = timedelta(minutes=15)


@dataclass
class ReconcileReport:
    """What was found, and with ``fixed``, removed.

    Attributes:
        orphan_objects: S3 keys without an image record, sorted.
        orphan_records: image ids whose object is missing, sorted.
        orphan_memberships: ``{"pk", "sk", "image_id"}`` of membership items whose image
            item does not exist, sorted by key.
        fixed: whether they were deleted.
    """

    orphan_objects: list[str] = field(default_factory=list)
    orphan_records: list[str] = field(default_factory=list)
    orphan_memberships: list[dict[str, str]] = field(default_factory=list)
    fixed: bool = False

    @property
    def clean(self) -> bool:
        """Whether no orphan of any kind was found."""
        return not (self.orphan_objects or self.orphan_records or self.orphan_memberships)


def reconcile(
    service: ImageService,
    fix: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
) -> ReconcileReport:
    """Find orphans of the three kinds; with ``fix``, delete them.

    Args:
        service: the wired service (its storage and metadata are used directly).
        fix: delete what is found; otherwise only report.
        grace: objects younger than this are never orphans (uploads in flight).
        now: the current time, timezone-aware (tests pass a later one instead of waiting).

    Raises:
        botocore.exceptions.ClientError: S3 or DynamoDB failed; what was fixed before
            stays fixed, and running the command again continues.
    """
    now = now or datetime.now(UTC)
    metadata, storage = service.metadata, service.storage
    records, memberships = metadata.scan_images_and_memberships()
    objects = dict(storage.iter_objects())  # listed after the Scan: see _is_orphan_object
    by_key = {record.s3_key: record for record in records}
    image_ids = {record.image_id for record in records}

    report = ReconcileReport(fixed=fix)
    report.orphan_objects = sorted(
        key
        for key, last_modified in objects.items()
        if key not in by_key and now - last_modified >= grace and _is_orphan_object(service, key)
    )
    orphan_records = sorted(
        (record for record in records if record.s3_key not in objects),
        key=lambda record: record.image_id,
    )
    orphan_records = [
        record
        for record in orphan_records
        if metadata.get_image(record.image_id) is not None and not storage.exists(record.s3_key)
    ]
    report.orphan_records = [record.image_id for record in orphan_records]
    report.orphan_memberships = sorted(
        (
            membership
            for membership in memberships
            if membership["image_id"] not in image_ids
            and metadata.get_image(membership["image_id"]) is None
        ),
        key=lambda membership: (membership["pk"], membership["sk"]),
    )
    if fix:
        for key in report.orphan_objects:
            logger.info("deleting object %s: no image record points at it", key)
            storage.delete(key)
        for record in orphan_records:
            logger.info(
                "deleting image %s: its object %s is missing", record.image_id, record.s3_key
            )
            try:
                metadata.delete_image(record, owner=None)
            except ImageNotFoundError:
                logger.info("image %s was deleted meanwhile", record.image_id)
        for membership in report.orphan_memberships:
            logger.info("deleting membership %s / %s: no image", membership["pk"], membership["sk"])
            if not metadata.delete_orphan_membership(membership):
                logger.info("membership %s kept: its image exists now", membership)
    return report


def _is_orphan_object(service: ImageService, key: str) -> bool:
    """Whether no record points at ``key`` now (not only at the Scan): its image id is the
    key's file stem (``images/{image_id}.{ext}``)."""
    record = service.metadata.get_image(PurePosixPath(key).stem)
    return record is None or record.s3_key != key


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; settings come from the environment like the Lambda's.

    Prints the report as JSON on stdout and returns 0 (orphans found or not); S3 or
    DynamoDB errors propagate (exit status 1 with a traceback).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fix", action="store_true", help="delete the orphans found")
    parser.add_argument(
        "--grace-minutes",
        type=float,
        default=DEFAULT_GRACE.total_seconds() / 60,
        help="ignore objects younger than this (default %(default)g)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    service = ImageService.from_settings(Settings.from_env())
    report = reconcile(service, fix=args.fix, grace=timedelta(minutes=args.grace_minutes))
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
