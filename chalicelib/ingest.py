"""The ingest pipeline: the one way an image becomes part of the service.

``POST /images`` (bytes in the request), ``POST /uploads/{id}/complete`` and the S3
notification of a direct upload (bytes already in the bucket) all hand the bytes to
:meth:`Ingest.ingest`, so every image gets the same checks and processing:

1. **Check** from the header, before anything is written (``imaging.probe``): size,
   type, pixels, decoded size, frames; the declared type and SHA-256 when given.
2. **Process** (``imaging.process``): decode every frame, rebuild the
   original, make the renditions and the placeholder.
3. **Store** the original and every rendition in S3, at keys named after the image id
   and the stored bytes' digest (``chalicelib.storage.object_key``), so two ingests of
   different bytes for one image never overwrite each other's objects. A direct
   upload's original, when processing leaves it unchanged, is copied inside S3 from the
   uploaded object (``ImageStorage.copy``, only if that object is still the one read)
   instead of being put again: the bytes cross the network once, not three times.
4. **Commit** the metadata in one conditional transaction (``ImageMetadataStore.put_image``),
   which for a direct upload also moves the upload from ``pending`` to ``ready``.

Why it is safe to run twice, or at once (S3 delivers events at least once, ``complete``
may race the event): each step is idempotent or conditional. The same bytes give the
same keys and the same objects; only one transaction can move an upload out of
``pending``; whoever loses reads the winner's record and returns it, deleting only the
objects of its own that the winner's record does not name.

Failures (SPEC, *Consistency*):

- a check or processing failure: nothing was written; the error is the client's 4xx;
- an S3 failure while storing: the objects already written (or maybe written) are
  deleted, and the image was not saved (a put that lands after its delete is an orphan
  the sweep removes: bytes without a record are invisible); for a direct upload, only
  objects no other ingest of the upload may commit (``Ingest._discard``: kept while the
  upload is pending; once another ingest made it ready, its record is the answer);
- the transaction's answer lost (``OutcomeUnknownError``): the objects stay, the same
  transaction is driven once more (its conditions make that safe: if the first one
  committed, the second finds the items and the image is known saved), then a
  consistent read is tried; if nothing decides, the answer says the outcome is unknown
  and names the id to check, and nothing is undone: a late commit makes the image
  complete, and otherwise the sweep removes the objects (or, for a direct upload,
  the next event, ``complete`` or the sweep finishes it);
- an error answer from DynamoDB: nothing was committed; the objects are deleted (as
  for an S3 failure, ``Ingest._discard``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from chalicelib import imaging
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    DependencyError,
    InvalidInputError,
    OutcomeUnknownError,
    UploadRejectedError,
    WriteConflictError,
)
from chalicelib.metadata import ImageMetadataStore, ImageRecord, RenditionRecord
from chalicelib.storage import ImageStorage, StoredObject, object_key, rendition_key
from chalicelib.validation import (
    UploadRequest,
    check_declared_type,
    format_timestamp,
    sanitize_filename,
)

logger = logging.getLogger(__name__)

#: Writes an image's objects (original and renditions) to S3 concurrently.
_uploader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store")

#: What a commit raises when it cannot tell or failed (see ``ImageMetadataStore.put_image``).
_COMMIT_FAILURES: tuple[type[Exception], ...] = (OutcomeUnknownError, *AWS_CALL_FAILURES)
#: Hex digits of the stored original's SHA-256 that name its objects' version.
VERSION_DIGITS = 16


@dataclass(frozen=True)
class Ingested:
    """What :meth:`Ingest.ingest` committed: ``record`` as stored, and ``created``:
    whether this call committed it (False: an earlier or concurrent ingest of the same
    upload did, and ``record`` is that one's)."""

    record: ImageRecord
    created: bool


@dataclass(frozen=True)
class _Object:
    key: str
    data: bytes
    content_type: str
    #: Where these exact bytes already are in the bucket (a direct upload's object):
    #: stored by a server-side copy instead of a put.
    copy_of: StoredObject | None = None


class Ingest:
    """Check, process, store and commit one image (see the module docstring).

    Args:
        storage: the image bucket.
        metadata: the metadata table.
        limits: size, pixel, frame limits and rendition sizes (from ``Settings``).
        clock: the current time, timezone-aware.
    """

    def __init__(
        self,
        storage: ImageStorage,
        metadata: ImageMetadataStore,
        limits: imaging.ImageLimits,
        clock: Callable[[], datetime],
    ) -> None:
        self.storage = storage
        self.metadata = metadata
        self.limits = limits
        self._clock = clock

    def check(self, request: UploadRequest) -> imaging.ImageInfo:
        """Step 1 alone: refuse what the header rules out, writing nothing.

        Raises:
            InvalidInputError: the declared type contradicts the bytes.
            PayloadTooLargeError, UnsupportedImageError: see ``imaging.probe``.
        """
        info = imaging.probe(request.data, self.limits, request.image_field)
        check_declared_type(
            request.declared_content_type, info.content_type, request.content_type_field
        )
        return info

    def ingest(
        self,
        request: UploadRequest,
        image_id: str,
        *,
        expected_sha256: str | None = None,
        upload_id: str | None = None,
        source: StoredObject | None = None,
    ) -> Ingested:
        """Make ``request`` the image ``image_id``; returns its record as stored.

        Args:
            request: the bytes and the validated fields.
            image_id: the id to store it under (new for ``POST /images``; the upload's
                for a direct upload).
            expected_sha256: hex digest the bytes as sent must have (``sha256`` of
                ``POST /uploads``), or None.
            upload_id: the direct upload this completes, or None.
            source: the uploaded object ``request.data`` was read from, or None. When
                the original is stored unchanged, it is copied from there inside S3
                rather than put again (a 50 MB image is not sent back to S3).

        Returns:
            The committed record: this call's, or, when another ingest of the same
            upload committed first, that one's (``created`` False).

        Raises:
            InvalidInputError, PayloadTooLargeError, UnsupportedImageError: the bytes
                break a rule; nothing was written.
            UploadRejectedError: another ingest of the same upload rejected it first.
            DependencyError: S3 or DynamoDB failed; the message says whether the image
                was saved, or that it cannot be told yet (and which id to check).
        """
        self.check(request)
        sent_digest = None
        if expected_sha256 is not None:
            sent_digest = hashlib.sha256(request.data).hexdigest()
            if sent_digest != expected_sha256:
                raise InvalidInputError(
                    "sha256",
                    f"the bytes received have SHA-256 {sent_digest}, not {expected_sha256}",
                )
        processed = imaging.process(request.data, self.limits, request.image_field)
        # The stored original is usually the bytes as sent (nothing to strip): then their
        # digest is already known, and hashing them again is another pass over up to
        # MAX_IMAGE_BYTES.
        known = sent_digest if processed.original is request.data else None
        record, objects = self._plan(request, image_id, processed, known)
        if source is not None and processed.original is request.data:
            objects[0] = replace(objects[0], copy_of=source)
        committed = self._store(record, objects, upload_id)
        if committed is not None:  # another ingest of the upload committed meanwhile
            return Ingested(committed, created=False)
        return self._commit(record, upload_id)

    def _plan(
        self,
        request: UploadRequest,
        image_id: str,
        processed: imaging.ProcessedImage,
        original_sha256: str | None = None,
    ) -> tuple[ImageRecord, list[_Object]]:
        """The record and the objects to store for ``processed`` (``original_sha256``:
        the hex SHA-256 of ``processed.original`` when already computed)."""
        info = processed.info
        digest = original_sha256 or hashlib.sha256(processed.original).hexdigest()
        version = digest[:VERSION_DIGITS]
        objects = [
            _Object(
                object_key(image_id, info.extension, version), processed.original, info.content_type
            )
        ]
        renditions = []
        for rendition in processed.renditions:
            key = rendition_key(image_id, version, rendition.size)
            objects.append(_Object(key, rendition.data, rendition.content_type))
            renditions.append(
                RenditionRecord(
                    size=rendition.size,
                    width=rendition.width,
                    height=rendition.height,
                    content_type=rendition.content_type,
                    size_bytes=len(rendition.data),
                    s3_key=key,
                )
            )
        now = format_timestamp(self._clock())
        record = ImageRecord(
            image_id=image_id,
            user_id=request.user_id,
            title=request.title,
            description=request.description,
            tags=request.tags,
            metadata=request.metadata,
            filename=sanitize_filename(request.filename, info.extension),
            content_type=info.content_type,
            size_bytes=len(processed.original),
            width=info.width,
            height=info.height,
            sha256=digest,
            s3_key=objects[0].key,
            created_at=now,
            updated_at=now,
            frames=info.frames,
            taken_at=processed.taken_at,
            placeholder=processed.placeholder,
            dominant_color=processed.dominant_color,
            renditions=renditions,
        )
        return record, objects

    def _store(
        self, record: ImageRecord, objects: list[_Object], upload_id: str | None
    ) -> ImageRecord | None:
        """Put every object; on any failure delete them all (see :meth:`_discard`) and
        raise. Returns None, or the record another ingest of ``upload_id`` committed
        while this one failed.

        Raises:
            DependencyError: an S3 put failed; the image was not saved.
        """
        sha = record.sha256
        futures = [_uploader.submit(self._put, item, sha) for item in objects]
        failure: Exception | None = None
        for future in futures:
            try:
                future.result()
            except AWS_CALL_FAILURES as exc:
                failure = failure or exc
        if failure is None:
            return None
        logger.warning("ingest %s: S3 put failed", record.image_id, exc_info=failure)
        # A put whose answer was lost may have landed: delete every key, not only those
        # that answered. Bytes without a record are invisible; the sweep removes any
        # that a late put writes after this.
        committed = self._discard(record, upload_id)
        if committed is not None:
            return committed
        raise DependencyError("s3", "storing the image", failure, _not_saved(upload_id))

    def _put(self, item: _Object, sha256_hex: str) -> None:
        """Store one object: a server-side copy when its bytes are in the bucket already,
        else (or when that object changed meanwhile) a put of the bytes."""
        if item.copy_of is not None and self.storage.copy(
            item.copy_of, item.key, item.content_type, sha256_hex
        ):
            return
        self.storage.put(item.key, item.data, item.content_type, sha256_hex)

    def _commit(self, record: ImageRecord, upload_id: str | None) -> Ingested:
        """Step 4 with its failure handling (see the module docstring)."""
        step = "saving the image's metadata"
        try:
            self.metadata.put_image(record, upload_id)
            return Ingested(record, created=True)
        except WriteConflictError:
            return self._settle_conflict(record, upload_id)
        except OutcomeUnknownError as exc:
            logger.warning("ingest %s: the commit's answer was lost; again", record.image_id)
            first_error: Exception = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        except AWS_CALL_FAILURES as exc:
            logger.warning("ingest %s: commit failed", record.image_id, exc_info=True)
            committed = self._discard(record, upload_id)
            if committed is not None:
                return Ingested(committed, created=False)
            raise DependencyError("dynamodb", step, exc, _not_saved(upload_id)) from exc
        # The first transaction may commit, or have committed: drive the same one again.
        try:
            self.metadata.put_image(record, upload_id)
            return Ingested(record, created=True)
        except WriteConflictError:
            return self._settle_conflict(record, upload_id)
        except _COMMIT_FAILURES:
            logger.warning("ingest %s: the second commit failed too", record.image_id)
        # Neither answer arrived: one of them may still have committed. A consistent
        # read can prove it did; it cannot prove it won't, so nothing is undone.
        try:
            committed = self.metadata.get_image(record.image_id)
        except AWS_CALL_FAILURES:
            committed = None
        if committed is not None:
            return Ingested(committed, created=committed == record)
        logger.warning("ingest %s: outcome unknown", record.image_id)
        where = f"GET /uploads/{upload_id}" if upload_id else f"GET /images/{record.image_id}"
        outcome = (
            f"the image may have been saved as {record.image_id}: {where} tells; "
            "it becomes complete or is removed on its own"
        )
        raise DependencyError("dynamodb", step, first_error, outcome) from first_error

    def _settle_conflict(self, record: ImageRecord, upload_id: str | None) -> Ingested:
        """The transaction's conditions failed: another ingest of this image committed
        (or rejected the upload), or an earlier attempt of this one did. Return the
        committed record; delete this ingest's objects that it does not name.

        Raises:
            UploadRejectedError: the upload was rejected.
            DependencyError: the winner cannot be read.
        """
        step = "reading the committed image"
        try:
            if upload_id is not None:
                upload = self.metadata.get_upload(upload_id)
                if upload is not None and upload.status in ("rejected", "expired"):
                    self.storage.delete_or_log(record.object_keys, f"ingest {record.image_id}")
                    error = upload.error or {
                        "Code": "GoneError",
                        "Message": "upload_id: the upload expired",
                    }
                    raise UploadRejectedError(error["Code"], error["Message"])
            committed = self.metadata.get_image(record.image_id)
        except AWS_CALL_FAILURES as exc:
            outcome = f"the image may have been saved as {record.image_id}; retry"
            raise DependencyError("dynamodb", step, exc, outcome) from exc
        if committed is None:
            # An image item existed a moment ago but is gone: deleted by its owner
            # right after it committed. Nothing of this ingest is kept.
            self.storage.delete_or_log(record.object_keys, f"ingest {record.image_id}")
            raise WriteConflictError(f"image_id: {record.image_id} was deleted meanwhile")
        kept = set(committed.object_keys)
        stale = [key for key in record.object_keys if key not in kept]
        if stale:
            self.storage.delete_or_log(stale, f"ingest {record.image_id} (lost the race)")
        # Equal records: this ingest's own transaction committed on an earlier attempt.
        return Ingested(committed, created=committed == record)

    def _discard(self, record: ImageRecord, upload_id: str | None) -> ImageRecord | None:
        """Delete the objects of this failed ingest, but none that another ingest may
        commit: the other ingests of a direct upload (the event, ``complete``, the
        sweep) store the same bytes under the same keys. While the upload is pending
        (or cannot be read) its objects stay, for the next attempt or the sweep; once
        it is ready, only the keys its image does not name go, and that image is
        returned.
        """
        keys = record.object_keys
        if upload_id is not None:
            try:
                upload = self.metadata.get_upload(upload_id)
                ready = upload is not None and upload.status == "ready"
                committed = self.metadata.get_image(record.image_id) if ready else None
            except AWS_CALL_FAILURES:
                logger.warning("ingest %s: objects kept for the sweep", record.image_id)
                return None
            if upload is not None and upload.status == "pending":
                logger.info(
                    "ingest %s: objects kept: upload %s may commit them",
                    record.image_id,
                    upload_id,
                )
                return None
            if committed is not None:
                kept = set(committed.object_keys)
                self.storage.delete_or_log(
                    [key for key in keys if key not in kept], f"ingest {record.image_id}"
                )
                return committed
        self.storage.delete_or_log(keys, f"ingest {record.image_id}")
        return None


def _not_saved(upload_id: str | None) -> str:
    """What a failed ingest left, for the client: for ``POST /images``, nothing; for a
    direct upload, an upload still pending, which another ingest of it (the event, a
    concurrent ``complete``) may be completing."""
    if upload_id is None:
        return "the image was not saved; retry"
    return f"the upload is still pending: retry complete (GET /uploads/{upload_id} tells)"
