"""The sweep: removes what no request leaves behind but a crash, a lost answer or a
lost event can (SPEC, *Sweep*). The scheduled Lambda (``app.sweep``) and ``make
reconcile`` run this same code.

What it finds, in four phases, each read in bounded slices (one ``ListObjectsV2`` call
or one Scan page of at most ``slice_items``):

- ``images``, ``renditions``: objects no image record names (``orphan_objects``);
  fix: deleted.
- ``uploads``: uploaded objects of no pending upload (``orphan_upload_objects``; fix:
  deleted), and pending uploads whose bytes arrived but were never ingested, a lost
  event or a crash mid-ingest (``unfinished_uploads``; fix: finished through the
  ingest pipeline, exactly as ``complete`` would); one past its expiry by more than
  the grace period is left to the ``table`` phase, so it is reported once.
- ``table``: image records whose original is missing (``orphan_records``; fix: the
  record, its tag items and renditions deleted), tag items without their image
  (``orphan_memberships``; fix: deleted, conditionally), pending uploads past their
  expiry (``expired_uploads``; fix: finished if their bytes arrived in time, else
  marked ``expired``, and their object deleted).

Nothing younger than the grace period (``SWEEP_GRACE_SECONDS``) is touched: a request
may still be writing it. Every candidate is read again, directly, before it is removed
(a record written between the listing and the check is not an orphan), and every
removal of metadata is conditional (``ImageMetadataStore.delete_orphan_membership``,
the upload's ``pending`` condition).

Resumable: the scheduled run does ``max_slices`` slices and keeps its position in the
table (``SWEEP``/``CURSOR``), so a large bucket or table never needs one long run; the
next run continues there, and after the last phase starts again at the first.
``make reconcile`` sweeps from start to end, reporting only unless ``--fix``.

A slow or failing dependency (a read timeout, throttling, a 5xx: :func:`is_transient`)
fails the slice in hand, not the run: the slice is read again after a backoff
(``backoff_seconds``, doubling), up to ``slice_attempts`` times, and a leftover seen by
several tries is reported once. Only then does the run stop with :class:`SweepStopped`
(the cursor still at the last finished slice).

Usage: ``python -m chalicelib.sweep [--fix] [--grace-minutes 60]``; prints the report
as one JSON object, or one line on stderr (exit 1) when a slice keeps failing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    SERVER_FAULT_CODES,
    DependencyError,
    ImageNotFoundError,
    ImageServiceError,
    WriteConflictError,
    aws_error_code,
    is_throttling,
)
from chalicelib.metadata import TableItem, UploadRecord
from chalicelib.service import ImageService
from chalicelib.storage import (
    KEY_PREFIX,
    RENDITION_PREFIX,
    UPLOAD_PREFIX,
    StoredObject,
    image_id_of_key,
    upload_key,
)
from chalicelib.validation import parse_timestamp

logger = logging.getLogger(__name__)

PHASES = ("images", "renditions", "uploads", "table")
_PREFIXES = {"images": KEY_PREFIX, "renditions": RENDITION_PREFIX, "uploads": UPLOAD_PREFIX}
#: Items per slice: one ListObjectsV2 call (at most 1000 keys) or one Scan page.
DEFAULT_SLICE_ITEMS = 500
#: Slices per scheduled run: a few thousand items, well inside the function's timeout.
SCHEDULED_SLICES = 10
#: Time left, in milliseconds, under which no further slice starts (the first always
#: does). A slice cut short by the timeout loses only its own progress: the cursor is
#: saved after every slice, and what a slice does is safe to do again.
SLICE_RESERVE_MS = 2_000
#: Tries of one slice before the run stops, and the first pause between them (seconds,
#: doubling: 1, 2, 4). botocore has already retried each call inside a try.
SLICE_ATTEMPTS = 4
SLICE_BACKOFF_SECONDS = 1.0


def is_transient(error: BaseException) -> bool:
    """Whether a slice that raised ``error`` is worth reading again: no answer (timeouts,
    connections dropped), throttling, a server fault, or a :class:`DependencyError`
    (S3 or DynamoDB failing after the client's retries). Other error answers (access
    denied, validation) and programming errors are not."""
    if isinstance(error, DependencyError):
        return True
    if isinstance(error, ClientError):
        return is_throttling(error) or aws_error_code(error) in SERVER_FAULT_CODES
    return isinstance(error, AWS_CALL_FAILURES)


class SweepStopped(Exception):
    """A slice failed ``attempts`` times in a row; ``__cause__`` is the last error.

    Attributes:
        phase: the phase of that slice (one of :data:`PHASES`).
        position: where the slice started (what the saved cursor says).
        attempts: how many times it was tried.
        report: what the run found before it stopped.
    """

    def __init__(
        self, phase: str, position: Any, attempts: int, report: SweepReport, error: Exception
    ) -> None:
        super().__init__(
            f"the sweep stopped in its {phase} phase: one slice failed {attempts} times, "
            f"last with {aws_error_code(error)}: {error}"
        )
        self.phase = phase
        self.position = position
        self.attempts = attempts
        self.report = report


@dataclass
class SweepReport:
    """What one run found and, with ``fixed``, removed or finished.

    Attributes:
        orphan_objects: ``images/`` and ``renditions/`` keys no record names.
        orphan_upload_objects: ``uploads/`` keys of no pending upload.
        unfinished_uploads: ids of pending uploads whose bytes arrived and were never
            ingested (a lost event, a crash mid-ingest).
        orphan_records: ids of images whose original object is missing.
        orphan_memberships: ``{"pk", "sk", "image_id"}`` of tag items without an image.
        expired_uploads: ids of uploads left pending past their expiry.
        fixed: whether the above were acted on.
        done: whether the run reached the end of the last phase.
    """

    orphan_objects: list[str] = field(default_factory=list)
    orphan_upload_objects: list[str] = field(default_factory=list)
    unfinished_uploads: list[str] = field(default_factory=list)
    orphan_records: list[str] = field(default_factory=list)
    orphan_memberships: list[dict[str, str]] = field(default_factory=list)
    expired_uploads: list[str] = field(default_factory=list)
    fixed: bool = False
    done: bool = False

    @property
    def clean(self) -> bool:
        """Whether nothing of any kind was found."""
        return not (
            self.orphan_objects
            or self.orphan_upload_objects
            or self.unfinished_uploads
            or self.orphan_records
            or self.orphan_memberships
            or self.expired_uploads
        )


class Sweep:
    """One sweep over the bucket and the table of ``service``.

    Args:
        service: the wired service (its storage, metadata and direct uploads are used).
        fix: act on what is found; otherwise only report.
        grace: nothing younger than this is touched.
        clock: the current time, timezone-aware (tests pass a later one).
        slice_items: items per slice (see the module docstring).
        slice_attempts: tries of one slice before :class:`SweepStopped`.
        backoff_seconds: pause after a slice's first failure, doubling after each.
        sleep: how to pause (tests pass a recorder).
    """

    def __init__(
        self,
        service: ImageService,
        *,
        fix: bool,
        grace: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        slice_items: int = DEFAULT_SLICE_ITEMS,
        slice_attempts: int = SLICE_ATTEMPTS,
        backoff_seconds: float = SLICE_BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.fix = fix
        self.grace = grace
        self._clock = clock
        self.slice_items = slice_items
        self.slice_attempts = max(1, slice_attempts)
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    @classmethod
    def scheduled(cls, service: ImageService) -> Sweep:
        """The sweep the schedule runs: fixing, with ``SWEEP_GRACE_SECONDS`` of grace."""
        return cls(service, fix=True, grace=timedelta(seconds=service.settings.sweep_grace_seconds))

    def run(
        self,
        max_slices: int | None = SCHEDULED_SLICES,
        resume: bool = True,
        time_left_ms: Callable[[], int] | None = None,
    ) -> SweepReport:
        """Sweep ``max_slices`` slices (None: to the end).

        Args:
            max_slices: most slices to read in this run.
            resume: start where the last resumable run stopped, and save where this
                one stops (the scheduled sweep) after every slice; False sweeps from
                the start and keeps no cursor (``make reconcile``).
            time_left_ms: milliseconds the run may still take (the Lambda context's
                ``get_remaining_time_in_millis``); after the first slice, none starts
                with less than :data:`SLICE_RESERVE_MS` left.

        Raises:
            SweepStopped: a slice failed :func:`is_transient`-ly ``slice_attempts``
                times; what was fixed before stays fixed, the next run continues from
                the last saved slice.
            botocore.exceptions.ClientError: another error answer (access denied...),
                at once, with the same guarantees.
        """
        metadata = self.service.metadata
        cursor = (metadata.get_sweep_cursor() if resume else None) or {"phase": PHASES[0]}
        phase, position = str(cursor["phase"]), cursor.get("position")
        if phase not in PHASES:
            phase, position = PHASES[0], None
        report = SweepReport(fixed=self.fix)
        slices = 0
        while max_slices is None or slices < max_slices:
            if slices and time_left_ms is not None and time_left_ms() < SLICE_RESERVE_MS:
                break
            position = self._retried_slice(phase, position, report)
            slices += 1
            if position is None:  # the phase is done: the next one, or the end
                index = PHASES.index(phase) + 1
                report.done = index == len(PHASES)
                phase = PHASES[index % len(PHASES)]
            if resume and self.fix:
                metadata.put_sweep_cursor(
                    None if report.done else {"phase": phase, "position": position}
                )
            if report.done:
                break
        logger.info("sweep: %s", json.dumps(asdict(report)))
        return report

    # --- slices -----------------------------------------------------------------------

    def _retried_slice(self, phase: str, position: Any, report: SweepReport) -> Any:
        """:meth:`_slice`, tried again after a backoff when it fails transiently (what a
        slice does is safe to do again). A finding of a failed try stays in the report
        (with ``fix``, it may have been acted on), once however many tries saw it."""
        lists = [value for value in vars(report).values() if isinstance(value, list)]
        before = [len(value) for value in lists]
        for attempt in range(1, self.slice_attempts + 1):
            try:
                after = self._slice(phase, position, report)
            except Exception as error:
                if not is_transient(error):
                    raise
                if attempt == self.slice_attempts:
                    raise SweepStopped(phase, position, attempt, report, error) from error
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                logger.warning(
                    "sweep: %s slice from %r failed (%s), again in %.1f s",
                    phase,
                    position,
                    aws_error_code(error),
                    delay,
                )
                self._sleep(delay)
                continue
            if attempt > 1:
                for value, start in zip(lists, before, strict=True):
                    unique = {json.dumps(entry, sort_keys=True): entry for entry in value[start:]}
                    value[start:] = unique.values()
            return after
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _slice(self, phase: str, position: Any, report: SweepReport) -> Any:
        """Sweep one slice of ``phase`` from ``position``; returns the next position
        (None: the phase is done)."""
        if phase == "table":
            items, resume = self.service.metadata.scan_slice(position, self.slice_items)
            for item in items:
                self._table_item(item, report)
            return resume
        objects, after = self.service.storage.iter_objects_after(
            _PREFIXES[phase], position, self.slice_items
        )
        for stored in objects:
            if self._young(stored.last_modified):
                continue
            if phase == "uploads":
                self._upload_object(stored, report)
            else:
                self._image_object(stored, report)
        return after

    def _image_object(self, stored: StoredObject, report: SweepReport) -> None:
        image_id = image_id_of_key(stored.key)
        record = None if image_id is None else self.service.metadata.get_image(image_id)
        if record is not None and stored.key in record.object_keys:
            return
        if self.fix:
            # An ingest may have written the same key again since the listing (keys
            # follow the bytes): only an object still past the grace period goes.
            current = self.service.storage.head(stored.key)
            if current is None or self._young(current.last_modified):
                return
            report.orphan_objects.append(stored.key)
            logger.info("deleting %s: no image record names it", stored.key)
            self.service.storage.delete(stored.key)
            return
        report.orphan_objects.append(stored.key)

    def _upload_object(self, stored: StoredObject, report: SweepReport) -> None:
        upload_id = stored.key[len(UPLOAD_PREFIX) :]
        upload = self.service.metadata.get_upload(upload_id)
        if upload is not None and upload.status == "pending":
            if self._expired(upload):
                return  # the table phase finishes it, as one of the expired_uploads
            report.unfinished_uploads.append(upload_id)
            if self.fix:
                self._finish(upload)
            return
        report.orphan_upload_objects.append(stored.key)
        if self.fix:
            logger.info("deleting %s: it belongs to no pending upload", stored.key)
            self.service.storage.delete(stored.key)

    def _table_item(self, item: TableItem, report: SweepReport) -> None:
        if item.created_at is None or self._young(parse_timestamp(item.created_at)):
            return
        metadata, storage = self.service.metadata, self.service.storage
        if item.kind == "image" and item.record is not None:
            record = item.record
            if storage.exists(record.s3_key) or metadata.get_image(record.image_id) is None:
                return
            report.orphan_records.append(record.image_id)
            if self.fix:
                logger.info("deleting image %s: its original is missing", record.image_id)
                try:
                    metadata.delete_image(record, owner=None)
                except (ImageNotFoundError, WriteConflictError):
                    return  # deleted, or edited, since the Scan read it: the next sweep sees
                for key in record.object_keys:
                    storage.delete(key)
        elif item.kind == "membership" and item.image_id is not None:
            if metadata.get_image(item.image_id) is not None:
                return
            if self.fix and item.image_id in report.orphan_records:
                return  # deleted with its orphan record a moment ago (same Scan page)
            membership = {"pk": item.pk, "sk": item.sk, "image_id": item.image_id}
            report.orphan_memberships.append(membership)
            if self.fix and not metadata.delete_orphan_membership(membership):
                logger.info("tag item %s kept: its image exists now", membership)
        elif item.kind == "upload" and item.upload is not None:
            upload = item.upload
            if upload.status != "pending" or not self._expired(upload):
                return
            report.expired_uploads.append(upload.upload_id)
            if self.fix and self._finish(upload):
                storage.delete(upload_key(upload.upload_id))

    # --- helpers ----------------------------------------------------------------------

    def _finish(self, upload: UploadRecord) -> bool:
        """Drive ``upload`` to its end through the same code ``complete`` runs: bytes
        that arrived in time are ingested, anything else expires or is rejected.

        Returns:
            False when S3 or DynamoDB failed on the way (``DependencyError``) or another
            arrival holds the upload's processing lease: the upload may still be pending
            with bytes that arrived in time, so its object must stay for the next run;
            True otherwise.
        """
        try:
            ingested = self.service.uploads.finish(upload)
        except DependencyError as exc:
            logger.warning("upload %s not finished, next run again: %s", upload.upload_id, exc)
            return False
        except ImageServiceError as exc:
            logger.info("upload %s ended: %s", upload.upload_id, exc)
            return True
        if ingested is None:
            # A live lease: another arrival is processing it now. A dead holder's lease
            # expires and the next run takes the work over.
            logger.info("upload %s is being processed; next run again", upload.upload_id)
            return False
        logger.info("upload %s finished as %s", upload.upload_id, ingested.record.image_id)
        return True

    def _expired(self, upload: UploadRecord) -> bool:
        """Whether ``upload`` is past its expiry by more than the grace period."""
        return self._clock() > parse_timestamp(upload.expires_at) + self.grace

    def _young(self, moment: datetime) -> bool:
        return self._clock() - moment < self.grace


def main(argv: Sequence[str] | None = None) -> int:
    """``make reconcile``: the whole sweep, settings from the environment like the
    Lambda's. Prints the report as JSON on stdout and returns 0 (found or not); when a
    slice keeps failing (:class:`SweepStopped`), one line on stderr and 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fix", action="store_true", help="remove what is found")
    parser.add_argument(
        "--grace-minutes",
        type=float,
        default=None,
        help="leave alone what is younger than this (default: SWEEP_GRACE_SECONDS)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    settings = Settings.from_env()
    grace = (
        timedelta(seconds=settings.sweep_grace_seconds)
        if args.grace_minutes is None
        else timedelta(minutes=args.grace_minutes)
    )
    service = ImageService.from_settings(settings)
    try:
        report = Sweep(service, fix=args.fix, grace=grace).run(max_slices=None, resume=False)
    except SweepStopped as stopped:
        done = "what was fixed stays fixed; " if args.fix else ""
        print(f"reconcile: {stopped}; {done}run it again", file=sys.stderr)
        return 1
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
