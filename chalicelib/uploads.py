"""Direct uploads: the bytes go from the client straight to S3, never through the API.

``POST /uploads`` validates the image's fields and writes a ``pending`` upload item
(with a TimeToLive), then answers an S3 presigned POST for ``uploads/{upload_id}``. The
client posts the bytes to S3; then either ``POST /uploads/{id}/complete`` or the
bucket's notification (``app.on_upload_created``) hands the object to
:meth:`DirectUploads.finish`, which checks what S3 should have enforced (the object's
size, that it arrived before the expiry) and gives it to the one ingest pipeline
(``chalicelib.ingest``). The pipeline's transaction moves the upload to ``ready``; a
refused object moves it to ``rejected`` (conditional on ``pending`` too), so whatever
calls first decides, and every later call answers the same.

Each upload is processed once: before reading the object, :meth:`DirectUploads.finish`
claims the work with a conditional processing lease on the upload item (holder id and
expiry, ``UPLOAD_LEASE_SECONDS``; :meth:`ImageMetadataStore.take_upload_lease`). A
second arrival does not decode: ``complete`` polls the item for the holder's outcome
(:data:`WAIT_DELAYS`, 20 s) and answers it, or :class:`UploadInProgress` (202); the S3
event and the sweep return. A holder that fails gives the lease back; one that dies
leaves it to expire, and the next arrival takes the work over. The commit still
conditions on ``pending``, so a holder that outlives its lease cannot make a second
image.

Upload item states: ``pending`` -> ``ready`` | ``rejected`` | ``expired``, each move a
conditional write from ``pending`` (which also drops the lease). The object under
``uploads/`` is deleted once the upload has left ``pending``; a lifecycle rule and the
sweep remove what a crash leaves.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.config import Settings, identity_source
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    DependencyError,
    ImageNotFoundError,
    InvalidInputError,
    MissingIdentityError,
    NotOwnerError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    UploadExpiredError,
    UploadNotFoundError,
    UploadNotReceivedError,
    UploadRejectedError,
    WriteConflictError,
    error_code,
    may_have_taken_effect,
)
from chalicelib.ingest import Ingest, Ingested
from chalicelib.metadata import ImageMetadataStore, ImageRecord, UploadRecord
from chalicelib.storage import UPLOAD_PREFIX, ImageStorage, StoredObject, upload_key
from chalicelib.validation import UploadRequest, UploadStart, format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

#: How long an upload item outlives its expiry before DynamoDB's TTL may delete it, in
#: seconds: ``GET /uploads/{id}`` answers for a day after ``expires_at``, and the sweep
#: has that long to finish an upload whose bytes arrived in time but whose event was lost.
UPLOAD_RETENTION_SECONDS = 24 * 3600
#: The form part a presigned POST carries the file in.
FILE_FIELD = "file"
#: What writing the upload item raises when it cannot tell or failed.
_WRITE_FAILURES: tuple[type[Exception], ...] = (OutcomeUnknownError, *AWS_CALL_FAILURES)
#: How often :meth:`DirectUploads.finish` starts over when the object changes under it.
_MAX_ROUNDS = 3
#: How long ``complete`` waits for another arrival's outcome, in seconds: well inside
#: API Gateway's 29 s, with room for the reads and the answer.
COMPLETE_WAIT_SECONDS = 20.0
#: The pauses between ``complete``'s polls of the upload item, in seconds: from 0.1 s
#: doubling to 1 s, summing to :data:`COMPLETE_WAIT_SECONDS`; fixed before any wait runs
#: (23 polls), so the wait is bounded whatever the clock says.
WAIT_DELAYS: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8) + (1.0,) * 18 + (0.5,)
#: ``Retry-After`` of a 202 from ``complete``, in seconds: when to poll
#: ``GET /uploads/{id}`` (or call ``complete`` again, which waits again).
COMPLETE_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class UploadInProgress:
    """``complete``'s answer when another arrival still processes the upload after the
    wait (HTTP 202): ``status`` is the upload's ``GET /uploads/{id}`` body."""

    status: dict[str, Any]


class DirectUploads:
    """Start, inspect and finish direct uploads.

    Args:
        storage: the image bucket (presigned POSTs, the uploaded objects).
        metadata: the metadata table (upload items).
        ingest: the pipeline that turns an uploaded object into an image.
        settings: ``max_image_bytes``, ``upload_expires_seconds``,
            ``upload_lease_seconds``.
        clock: the current time, timezone-aware.
        sleep: pauses for a number of seconds (``complete``'s wait; tests pass their own).
    """

    def __init__(
        self,
        storage: ImageStorage,
        metadata: ImageMetadataStore,
        ingest: Ingest,
        settings: Settings,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.metadata = metadata
        self.ingest = ingest
        self.settings = settings
        self._clock = clock
        self._sleep = sleep

    def start(self, start: UploadStart) -> dict[str, Any]:
        """Write a pending upload and answer its presigned POST.

        Returns:
            ``{"upload_id", "image_id", "status": "pending", "expires_at", "upload":
            {"method": "POST", "url", "fields", "file_field", "max_bytes"}}``; the
            policy allows exactly ``start.size_bytes`` bytes when declared, else 1 to
            ``MAX_IMAGE_BYTES``, and expires after ``UPLOAD_EXPIRES_SECONDS``.

        A lost answer is resolved as the image commit resolves it (``chalicelib.ingest``):
        the same conditional write is driven once more (:meth:`ImageMetadataStore.put_upload`
        takes finding its own item for success), then a consistent read is tried; only
        when neither decides is the outcome unknown.

        Raises:
            DependencyError: DynamoDB failed. After an error answer nothing was
                written ("no upload was started"); when the outcome is unknown the
                message names the upload id that may exist (a pending upload nobody
                can post to, which expires on its own), never "not started".
        """
        upload_id, image_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = self._clock()
        expires = now + timedelta(seconds=self.settings.upload_expires_seconds)
        upload = UploadRecord(
            upload_id=upload_id,
            image_id=image_id,
            user_id=start.user_id,
            title=start.title,
            description=start.description,
            tags=start.tags,
            metadata=start.metadata,
            filename=start.filename,
            content_type=start.declared_content_type,
            size_bytes=start.size_bytes,
            sha256=start.sha256,
            status="pending",
            created_at=format_timestamp(now),
            expires_at=format_timestamp(expires),
        )
        self._write_upload(upload, int(expires.timestamp()) + UPLOAD_RETENTION_SECONDS)
        low = start.size_bytes or 1
        high = start.size_bytes or self.settings.max_image_bytes
        post = self.storage.presigned_post(
            upload_key(upload_id), low, high, self.settings.upload_expires_seconds
        )
        return {
            **self._summary(upload, "pending"),
            "upload": {
                "method": "POST",
                "url": post["url"],
                "fields": post["fields"],
                "file_field": FILE_FIELD,
                "max_bytes": high,
            },
        }

    def status(self, upload_id: str) -> dict[str, Any]:
        """``{"upload_id", "image_id", "status", "expires_at"}`` plus ``"image"`` (the
        record) when ready (absent once its owner deleted the image) or ``"error"``
        (``{"Code", "Message"}``) when rejected.

        A pending upload past its expiry whose bytes did not arrive in time reports
        ``expired``.

        Raises:
            UploadNotFoundError: no such upload.
            DependencyError: DynamoDB or S3 failed.
        """
        upload = self._get(upload_id)
        status = upload.status
        body = self._summary(upload, status)
        if status == "ready":
            # Completed, then deleted by its owner: still ready, with no image any more.
            with contextlib.suppress(ImageNotFoundError):
                body["image"] = self._read_image(upload).to_dict()
        elif status == "rejected" and upload.error is not None:
            body["error"] = upload.error
        elif status == "pending" and self._past_expiry(upload):
            stored = self._head(upload)
            if stored is None or not self._arrived_in_time(upload, stored):
                body["status"] = "expired"
        return body

    def complete(self, upload_id: str, caller: str | None) -> Ingested | UploadInProgress:
        """``POST /uploads/{upload_id}/complete``: finish the upload now, as its uploader.

        When another arrival (the S3 event, a concurrent ``complete``) holds the work,
        this one does not decode: it polls the upload item (strongly consistent reads,
        :data:`COMPLETE_WAIT_SECONDS` in all) for that one's outcome, and takes the work
        over if the other's lease expires or is given back meanwhile.

        Returns:
            The image (``created`` False when it was completed before or by the other
            arrival), or :class:`UploadInProgress` when the other still holds the work
            at the end of the wait.

        Raises:
            UploadNotFoundError: no such upload.
            MissingIdentityError: ``caller`` is None; NotOwnerError: not the uploader.
            UploadNotReceivedError: no object yet (409). UploadExpiredError: expired (410).
            InvalidInputError, PayloadTooLargeError, UnsupportedImageError,
                UploadRejectedError: the bytes were refused (now or before); the object
                is deleted and the upload is ``rejected``.
            DependencyError: S3 or DynamoDB failed (see ``chalicelib.ingest``).
        """
        upload = self._get(upload_id)
        source = identity_source(self.settings.auth_mode)
        if not caller:
            raise MissingIdentityError(f"{source}: missing; say who you are to complete an upload")
        if caller != upload.user_id:
            raise NotOwnerError(f"{source}: only the uploader may complete this upload")
        finished = self.finish(upload)
        if finished is not None:
            return finished
        for delay in WAIT_DELAYS:
            self._sleep(delay)
            latest = self._get(upload_id)
            if latest.status != "pending" or not latest.lease_held(self._now_epoch()):
                # Settled, or the holder gave the work back or died: answer or take over.
                finished = self.finish(latest)
                if finished is not None:
                    return finished
        return UploadInProgress(self.status(upload_id))

    def on_object_created(self, key: str) -> None:
        """The S3 notification for ``key`` under ``uploads/``: finish that upload.

        Idempotent: S3 delivers at least once and in any order. Refusals (the
        client's fault) are recorded on the upload and logged, not raised; an object
        that belongs to no upload is deleted.

        Raises:
            DependencyError: S3 or DynamoDB failed; Lambda retries the event.
        """
        upload_id = key[len(UPLOAD_PREFIX) :] if key.startswith(UPLOAD_PREFIX) else ""
        try:
            upload = self._get(upload_id)
        except UploadNotFoundError:
            logger.warning("object %s belongs to no upload; deleting it", key)
            self.storage.delete_or_log([key], "object of no upload")
            return
        try:
            ingested = self.finish(upload)
        except (InvalidInputError, UploadRejectedError, UploadExpiredError) as exc:
            logger.info("upload %s refused: %s", upload_id, exc)
        except UploadNotReceivedError:
            logger.info("upload %s: the object of this event is gone", upload_id)
        except (ImageNotFoundError, WriteConflictError) as exc:
            logger.info("upload %s: its image was deleted meanwhile (%s)", upload_id, exc)
        else:
            if ingested is None:  # this invocation is done; the holder finishes
                logger.info("upload %s: another arrival is processing it", upload_id)
            else:
                logger.info("upload %s is image %s", upload_id, ingested.record.image_id)

    def finish(self, upload: UploadRecord) -> Ingested | None:
        """Finish ``upload`` from whatever state it is in (``complete``, the S3 event
        and the sweep all come here). Raises as :meth:`complete` does, but for the
        identity checks.

        The work is claimed before it is done: a conditional processing lease on the
        upload item (:meth:`ImageMetadataStore.take_upload_lease`, for
        ``UPLOAD_LEASE_SECONDS``), taken once the object is known to be there, so one
        arrival decodes and the others do not.

        Returns:
            The image, or None when another arrival holds a live lease on the upload
            (it is processing it now; nothing was done here).
        """
        holder: str | None = None  # this call's lease, once taken
        try:
            for _ in range(_MAX_ROUNDS):
                if upload.status != "pending":
                    return self._settled(upload)
                if holder is None and upload.lease_held(self._now_epoch()):
                    return None
                stored = self._head(upload)
                if stored is None:
                    # Consumed by an ingest that finished since this one read the item?
                    latest = self._get(upload.upload_id)
                    if latest.status != "pending":
                        upload = latest
                        continue
                    if self._past_expiry(upload):
                        upload = self._move(upload, "expired", None)
                        continue
                    raise UploadNotReceivedError(
                        f"upload_id: no bytes received yet for {upload.upload_id}: "
                        "POST them to upload.url with upload.fields first"
                    )
                if not self._arrived_in_time(upload, stored):
                    upload = self._move(upload, "expired", None)
                    continue
                if holder is None:
                    holder, latest = self._take_lease(upload)
                    if holder is None:
                        if latest.status == "pending":
                            return None
                        upload = latest
                        continue
                try:
                    self._check_object(upload, stored)
                    data = self._read(stored)
                    if data is None:  # replaced or removed since the HEAD: look again
                        upload = self._get(upload.upload_id)
                        continue
                    ingested = self.ingest.ingest(
                        _as_request(upload, data),
                        upload.image_id,
                        expected_sha256=upload.sha256,
                        upload_id=upload.upload_id,
                        source=stored,
                    )
                except InvalidInputError as exc:
                    upload = self._move(upload, "rejected", exc)
                    holder = None  # the move dropped the lease, or another settled it
                    continue
                self.storage.delete_or_log([stored.key], "consumed upload object")
                return ingested
        except Exception:
            # A failure leaves the upload pending (or it was settled meanwhile): give the
            # work back, so a retry need not wait for the lease to expire. A crash skips
            # this; its lease expires.
            if holder is not None:
                self._release_lease(upload.upload_id, holder)
            raise
        if holder is not None:
            self._release_lease(upload.upload_id, holder)
        raise DependencyError(
            "s3",
            "reading the uploaded object",
            RuntimeError("the object kept changing"),
            "the upload is still pending; retry",
        )

    # --- steps ------------------------------------------------------------------------

    def _write_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        """Write the pending upload item for :meth:`start` (see there)."""
        step = "starting the upload"
        try:
            self.metadata.put_upload(upload, expires_at_epoch)
            return
        except OutcomeUnknownError as exc:
            logger.warning("upload %s: the answer was lost; again", upload.upload_id)
            first_error: Exception = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        except AWS_CALL_FAILURES as exc:
            logger.warning("upload %s: writing the upload item failed", upload.upload_id)
            raise DependencyError("dynamodb", step, exc, "no upload was started; retry") from exc
        # The first write may have been applied: drive the same one again.
        try:
            self.metadata.put_upload(upload, expires_at_epoch)
            return
        except _WRITE_FAILURES:
            logger.warning("upload %s: the second write failed too", upload.upload_id)
        # A consistent read can prove the item is there; it cannot prove it won't be.
        try:
            if self.metadata.get_upload(upload.upload_id) == upload:
                return
        except AWS_CALL_FAILURES:
            pass
        outcome = (
            f"the upload may have been started as {upload.upload_id} "
            f"(GET /uploads/{upload.upload_id} tells; it expires unused); start another"
        )
        raise DependencyError("dynamodb", step, first_error, outcome) from first_error

    def _settled(self, upload: UploadRecord) -> Ingested:
        """The answer for an upload that left ``pending``; its object, if any, goes."""
        self.storage.delete_or_log([upload_key(upload.upload_id)], "uploaded object")
        if upload.status == "ready":
            return Ingested(self._read_image(upload), created=False)
        if upload.status == "expired":
            raise UploadExpiredError(
                f"upload_id: upload {upload.upload_id} expired at {upload.expires_at}; "
                "start a new one with POST /uploads"
            )
        error = upload.error or {"Code": "BadRequestError", "Message": "upload_id: rejected"}
        raise UploadRejectedError(error["Code"], error["Message"])

    def _take_lease(self, upload: UploadRecord) -> tuple[str | None, UploadRecord]:
        """Claim the processing of ``upload``: ``(holder id, upload)`` when this call
        took the lease, ``(None, the upload as it now stands)`` when another arrival holds
        it or the upload left pending.

        A lost answer (this attempt, or one that botocore's retry then found already
        taken) may still have given us the lease: the item is read again (strongly
        consistent) and its holder compared with ours.

        Raises:
            DependencyError: DynamoDB refused the write, or its answer was lost and the
                item cannot be read.
        """
        holder = uuid.uuid4().hex
        now = self._now_epoch()
        until = now + self.settings.upload_lease_seconds
        outcome = "the upload is still pending; retry"
        failure: Exception | None = None
        try:
            if self.metadata.take_upload_lease(upload.upload_id, holder, now, until):
                return holder, upload
        except AWS_CALL_FAILURES as exc:
            if not may_have_taken_effect(exc):
                raise DependencyError("dynamodb", "claiming the upload", exc, outcome) from exc
            logger.warning("upload %s: the lease write's answer was lost", upload.upload_id)
            failure = exc
        latest = self._get(upload.upload_id)
        if latest.status == "pending" and latest.lease_holder == holder:
            return holder, latest
        if failure is not None and latest.status == "pending" and not latest.lease_held(now):
            # Our write did not land, and nobody else's did: a failure, not a holder.
            raise DependencyError("dynamodb", "claiming the upload", failure, outcome)
        return None, latest

    def _release_lease(self, upload_id: str, holder: str) -> None:
        """Give back the lease ``holder`` took; a failure is logged (it expires)."""
        try:
            self.metadata.release_upload_lease(upload_id, holder)
        except AWS_CALL_FAILURES:
            logger.warning("upload %s: releasing the lease failed; it expires", upload_id)

    def _now_epoch(self) -> int:
        return int(self._clock().timestamp())

    def _move(
        self, upload: UploadRecord, status: str, error: InvalidInputError | None
    ) -> UploadRecord:
        """Move ``upload`` out of pending (conditionally); returns it as it now stands."""
        body = None if error is None else {"Code": error_code(error), "Message": str(error)}
        try:
            self.metadata.finish_upload(upload.upload_id, status, body)
        except AWS_CALL_FAILURES as exc:
            outcome = "the upload is unchanged; retry"
            if may_have_taken_effect(exc):  # the update may have been applied
                outcome = (
                    f"the upload may have been marked {status}: "
                    f"GET /uploads/{upload.upload_id} tells; retry"
                )
            raise DependencyError("dynamodb", f"marking the upload {status}", exc, outcome) from exc
        # Whoever won, the item now says how the upload ended.
        return self._get(upload.upload_id)

    def _check_object(self, upload: UploadRecord, stored: StoredObject) -> None:
        """What the presigned POST's policy forbids, checked again from the HEAD, so an
        emulator or a misconfigured bucket cannot let it through.

        Raises:
            PayloadTooLargeError: more than ``MAX_IMAGE_BYTES``.
            InvalidInputError: empty, or not the declared ``size_bytes``.
        """
        limit = self.settings.max_image_bytes
        if stored.size_bytes > limit:
            raise PayloadTooLargeError(
                FILE_FIELD, f"the image is {stored.size_bytes} bytes, the limit is {limit} bytes"
            )
        if stored.size_bytes == 0:
            raise InvalidInputError(FILE_FIELD, "the image is empty")
        if upload.size_bytes is not None and stored.size_bytes != upload.size_bytes:
            raise InvalidInputError(
                "size_bytes",
                f"declared {upload.size_bytes} bytes, received {stored.size_bytes} bytes",
            )

    def _past_expiry(self, upload: UploadRecord) -> bool:
        return self._clock() > parse_timestamp(upload.expires_at)

    def _arrived_in_time(self, upload: UploadRecord, stored: StoredObject) -> bool:
        """S3 refuses a presigned POST after its expiry; so must we, after the fact."""
        # S3's Last-Modified has one-second precision.
        return stored.last_modified <= parse_timestamp(upload.expires_at) + timedelta(seconds=1)

    def _get(self, upload_id: str) -> UploadRecord:
        try:
            uuid.UUID(upload_id)
        except ValueError:
            raise UploadNotFoundError(upload_id) from None
        try:
            upload = self.metadata.get_upload(upload_id)
        except AWS_CALL_FAILURES as exc:
            raise DependencyError(
                "dynamodb", "reading the upload", exc, "nothing was changed; retry"
            ) from exc
        if upload is None:
            raise UploadNotFoundError(upload_id)
        return upload

    def _read_image(self, upload: UploadRecord) -> ImageRecord:
        try:
            record = self.metadata.get_image(upload.image_id)
        except AWS_CALL_FAILURES as exc:
            raise DependencyError(
                "dynamodb", "reading the image", exc, "nothing was changed; retry"
            ) from exc
        if record is None:  # completed, then deleted by its owner
            raise ImageNotFoundError(upload.image_id)
        return record

    def _head(self, upload: UploadRecord) -> StoredObject | None:
        try:
            return self.storage.head(upload_key(upload.upload_id))
        except AWS_CALL_FAILURES as exc:
            raise DependencyError(
                "s3", "looking for the uploaded object", exc, "the upload is still pending; retry"
            ) from exc

    def _read(self, stored: StoredObject) -> bytes | None:
        try:
            return self.storage.get(stored)
        except AWS_CALL_FAILURES as exc:
            raise DependencyError(
                "s3", "reading the uploaded object", exc, "the upload is still pending; retry"
            ) from exc

    @staticmethod
    def _summary(upload: UploadRecord, status: str) -> dict[str, Any]:
        return {
            "upload_id": upload.upload_id,
            "image_id": upload.image_id,
            "status": status,
            "expires_at": upload.expires_at,
        }


def _as_request(upload: UploadRecord, data: bytes) -> UploadRequest:
    """The uploaded object with the fields validated by ``POST /uploads``."""
    return UploadRequest(
        data=data,
        image_field=FILE_FIELD,
        filename=upload.filename,
        declared_content_type=upload.content_type,
        content_type_field="content_type",
        user_id=upload.user_id,
        title=upload.title,
        description=upload.description,
        tags=upload.tags,
        metadata=upload.metadata,
    )
