"""The image service: joins S3 storage and DynamoDB metadata under the consistency rules.

- Upload refuses whatever the image's header rules out before anything is written,
  then writes the object (its pixels decode meanwhile; a corrupt image's object is
  deleted again), then the metadata transaction; if the transaction fails, the object
  is deleted before the error propagates. No request leaves an object
  without metadata or metadata without an object.
- Delete removes metadata first (readers stop seeing the image at once), then the
  object; a failed object delete is logged and left to ``make reconcile``.
- A failing dependency (an error answer, throttling after the client's retries, no answer)
  is a :class:`DependencyError` (503) naming the step and what it left. When no answer
  came, the step may have taken effect: a consistent read decides before anything is
  undone, and while it cannot decide, the object stays for ``make reconcile`` (bytes
  without metadata are invisible; metadata without bytes would not be).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    DependencyError,
    ImageNotFoundError,
    MissingIdentityError,
    NotOwnerError,
    WriteConflictError,
    cancellation_reasons,
)
from chalicelib.metadata import ImageMetadataStore, ImageRecord
from chalicelib.pagination import PageTokenCodec
from chalicelib.storage import ImageStorage, object_key
from chalicelib.validation import (
    ListQuery,
    UploadRequest,
    ViewOptions,
    check_declared_type,
    check_decodes,
    format_timestamp,
    inspect_image,
    sanitize_filename,
)

logger = logging.getLogger(__name__)

#: Decodes uploads' pixels while their bytes are sent to S3 (one thread per upload in
#: flight; Lambda serves one request per process, ``chalice local`` one at a time).
_decoder = ThreadPoolExecutor(max_workers=4, thread_name_prefix="decode")

#: Retries and timeouts of every boto3 client, sized for a Lambda that API Gateway waits
#: 29 s for (``lambda_timeout`` is 30). botocore's defaults are 60 s per connect and per
#: read: one stuck call would outlive the request, and the client would get API Gateway's
#: bare 504 instead of our 503. "standard" mode retries throttling, 5xx and connection
#: errors with jittered exponential backoff (< 1 s, then < 2 s when throttled) and makes
#: TransactWriteItems retries idempotent (botocore fills in ``ClientRequestToken``). So
#: one call gives up after at most 3 x (2 + 4) + 3 = 21 s; a throttled or failing
#: dependency usually within 1-3 s, leaving time to undo an upload and answer. Healthy
#: calls take milliseconds; 4 s between bytes still covers a slow 10 MiB PutObject.
AWS_MAX_ATTEMPTS = 3
AWS_CONNECT_TIMEOUT_SECONDS = 2.0
AWS_READ_TIMEOUT_SECONDS = 4.0
AWS_CLIENT_CONFIG = Config(
    # ``total_max_attempts`` counts the first try; botocore's ``max_attempts`` does not.
    retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
    connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
    read_timeout=AWS_READ_TIMEOUT_SECONDS,
)

#: How long ``/health`` waits for its checks, in seconds. They run concurrently, so
#: ``/health`` answers within this even when a dependency hangs (a check's own boto3 call
#: may take up to ~21 s, see above), well inside API Gateway's 29 s.
HEALTH_CHECK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients the service uses, created once per process.

    ``s3_presigner`` signs URLs only; it differs from ``s3`` when clients reach S3 at a
    public endpoint that is not the one this process uses.
    """

    s3: Any
    dynamodb: Any
    s3_presigner: Any

    @classmethod
    def from_settings(cls, settings: Settings, config: Config | None = None) -> AwsClients:
        """Clients for the default session; endpoints come from boto3's own variables
        (``AWS_ENDPOINT_URL`` …), the presigner's from ``S3_PUBLIC_ENDPOINT_URL``. Every
        client has :data:`AWS_CLIENT_CONFIG` (standard retries, explicit timeouts), with
        ``config`` merged over it when given (e.g. a larger connection pool for a tool
        that calls from many threads)."""
        session = boto3.session.Session()
        base = AWS_CLIENT_CONFIG if config is None else AWS_CLIENT_CONFIG.merge(config)
        s3_config = base.merge(
            Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.s3_path_style else "virtual"},
            )
        )
        s3 = session.client("s3", config=s3_config)
        presigner = s3
        if settings.s3_public_endpoint_url:
            presigner = session.client(
                "s3", config=s3_config, endpoint_url=settings.s3_public_endpoint_url
            )
        dynamodb = session.client("dynamodb", config=base)
        return cls(s3=s3, dynamodb=dynamodb, s3_presigner=presigner)


@contextmanager
def _reading(step: str) -> Iterator[None]:
    """Turn a DynamoDB failure during a read-only ``step`` into a :class:`DependencyError`."""
    try:
        yield
    except AWS_CALL_FAILURES as exc:
        logger.warning("%s failed", step, exc_info=True)
        raise DependencyError("dynamodb", step, exc, "nothing was changed; retry") from exc


class ImageService:
    """Upload, list, view, download and delete images.

    Args:
        storage: the image bucket.
        metadata: the metadata table.
        settings: limits and defaults (sizes in bytes, expiries in seconds).
        clock: returns the current time, timezone-aware (tests pass a fixed one).
    """

    def __init__(
        self,
        storage: ImageStorage,
        metadata: ImageMetadataStore,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.metadata = metadata
        self.settings = settings
        self._tokens = PageTokenCodec(settings.token_secret)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> ImageService:
        """The service wired to real (or emulated) AWS through ``clients``."""
        clients = clients or AwsClients.from_settings(settings)
        return cls(
            ImageStorage(clients.s3, settings.bucket_name, clients.s3_presigner),
            ImageMetadataStore(clients.dynamodb, settings.table_name),
            settings,
        )

    def upload(self, request: UploadRequest) -> ImageRecord:
        """Store a validated upload: bytes in S3, then metadata in DynamoDB.

        Raises:
            InvalidInputError: the declared content type contradicts the bytes.
            PayloadTooLargeError, UnsupportedImageError: see :func:`inspect_image` and
                :func:`check_decodes`.
            WriteConflictError: the metadata transaction found an existing item.
            DependencyError: S3 or DynamoDB failed; the message says whether the image
                was saved (no, unless DynamoDB's answer was lost and cannot be checked).
        """
        info = inspect_image(
            request.data,
            self.settings.max_image_bytes,
            self.settings.max_image_pixels,
            field_name=request.image_field,
        )
        check_declared_type(
            request.declared_content_type, info.content_type, request.content_type_field
        )
        image_id = str(uuid.uuid4())
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
            size_bytes=len(request.data),
            width=info.width,
            height=info.height,
            sha256=hashlib.sha256(request.data).hexdigest(),
            s3_key=object_key(image_id, info.extension),
            created_at=now,
            updated_at=now,
        )
        # The pixels decode on another thread while the bytes travel to S3 (both release
        # the GIL): the upload takes about as long as the put alone. Nothing invalid is
        # kept: a corrupt image's object is deleted before its 415 is returned.
        decoded = _decoder.submit(check_decodes, request.data, request.image_field)
        try:
            self.storage.put(record.s3_key, request.data, record.content_type, record.sha256)
        except AWS_CALL_FAILURES as exc:
            decoded.result()  # a corrupt image is a 415 whatever S3 answered
            logger.warning("upload %s: S3 put failed", image_id, exc_info=True)
            outcome = "the image was not saved; retry"
            raise DependencyError("s3", "storing the image", exc, outcome) from exc
        try:
            decoded.result()
        except BaseException:  # a 415, or a decoder bug: either way, keep nothing
            self._undo_upload(record)
            raise
        try:
            self.metadata.put_image(record)
        except AWS_CALL_FAILURES as exc:
            self._settle_failed_metadata_write(record, exc)
        except WriteConflictError as exc:
            self._settle_failed_metadata_write(record, exc)
        except BaseException:
            self._undo_upload(record)
            raise
        return record

    def _settle_failed_metadata_write(self, record: ImageRecord, error: Exception) -> None:
        """After the metadata transaction of ``record`` raised ``error``: return if the
        image was saved after all, else undo the object and raise.

        An error answer means nothing was written. No answer means it may have been, and
        so does a conflict: the id is new, so an existing item is this transaction's
        own, retried after its answer was lost (botocore's ``ClientRequestToken`` makes
        DynamoDB answer such a retry with success; emulators may not). A consistent read
        decides; if that fails too, the object stays (``make reconcile`` removes it if
        no record points at it).

        Raises:
            WriteConflictError: ``error`` itself, when no item of this id exists.
            DependencyError: the image was not saved, or it cannot be told.
        """
        step = "saving the image's metadata"
        logger.warning("upload %s: metadata write failed", record.image_id, exc_info=True)
        if not isinstance(error, ClientError):
            try:
                saved = self.metadata.get_image(record.image_id) is not None
            except AWS_CALL_FAILURES:
                logger.warning("upload %s: cannot tell if it was saved", record.image_id)
                outcome = (
                    f"the image may have been saved as {record.image_id}: "
                    f"GET /images/{record.image_id} tells (404: retry)"
                )
                raise DependencyError("dynamodb", step, error, outcome) from error
            if saved:
                logger.warning("upload %s: the transaction committed after all", record.image_id)
                return
        self._undo_upload(record)
        if isinstance(error, WriteConflictError):
            raise error
        raise DependencyError("dynamodb", step, error, "the image was not saved; retry") from error

    def _undo_upload(self, record: ImageRecord) -> None:
        """Delete the object of an upload whose metadata was not written."""
        self._delete_object(record, f"upload {record.image_id}: object {record.s3_key}")

    def list_images(self, query: ListQuery) -> dict[str, Any]:
        """A page of images, newest first: ``{"items", "count", "next_token"}``.

        Each item is a record plus ``url``, a presigned GET valid
        ``URL_EXPIRES_SECONDS``.

        Raises:
            InvalidInputError: ``next_token`` is modified or from another query.
            DependencyError: DynamoDB failed (nothing was changed).
        """
        filters = query.filters()
        start = None
        if query.next_token is not None:
            start = self._tokens.decode(query.next_token, filters)
        with _reading("listing images"):
            page = self.metadata.list_images(query, start)
        items = [
            {
                **record.to_dict(),
                "url": self.storage.presigned_get_url(
                    record.s3_key, self.settings.url_expires_seconds
                ),
            }
            for record in page.records
        ]
        next_token = None if page.cursor is None else self._tokens.encode(page.cursor, filters)
        return {"items": items, "count": len(items), "next_token": next_token}

    def get_image(self, image_id: str) -> ImageRecord:
        """The record of ``image_id``.

        Raises:
            ImageNotFoundError: no such image (also for ids that are not UUIDs).
        """
        try:
            uuid.UUID(image_id)
        except ValueError:
            raise ImageNotFoundError(image_id) from None
        record = self.metadata.get_image(image_id)
        if record is None:
            raise ImageNotFoundError(image_id)
        return record

    def view(self, image_id: str, options: ViewOptions) -> dict[str, Any]:
        """The record plus ``download_url`` and ``expires_in`` (seconds), unless
        ``metadata_only``; with ``download``, the URL forces an attachment named after
        the original filename.

        Raises:
            ImageNotFoundError: no such image.
            DependencyError: DynamoDB failed (nothing was changed).
        """
        with _reading("reading the image"):
            record = self.get_image(image_id)
        body = record.to_dict()
        if not options.metadata_only:
            body["download_url"] = self.storage.presigned_get_url(
                record.s3_key,
                options.expires_in,
                download_filename=record.filename if options.download else None,
            )
            body["expires_in"] = options.expires_in
        return body

    def download_url(self, image_id: str) -> str:
        """A presigned URL that downloads ``image_id`` as an attachment.

        Raises:
            ImageNotFoundError: no such image.
            DependencyError: DynamoDB failed (nothing was changed).
        """
        with _reading("reading the image"):
            record = self.get_image(image_id)
        return self.storage.presigned_get_url(
            record.s3_key, self.settings.url_expires_seconds, download_filename=record.filename
        )

    def delete(self, image_id: str, caller: str | None) -> None:
        """Delete ``image_id`` if ``caller`` owns it: metadata first, then the object.

        Raises:
            MissingIdentityError: ``caller`` is None.
            ImageNotFoundError: no such image.
            NotOwnerError: ``caller`` is not the owner.
            WriteConflictError: another request changed the image at the same moment.
            DependencyError: DynamoDB failed; the message says whether the image was
                deleted. (An S3 failure after the metadata is gone is only logged.)
        """
        identity = self._identity_source()
        if not caller:
            raise MissingIdentityError(f"{identity}: missing; say who you are to delete an image")
        try:
            record = self.get_image(image_id)
        except AWS_CALL_FAILURES as exc:
            logger.warning("delete %s: reading the image failed", image_id, exc_info=True)
            outcome = "the image was not deleted; retry"
            raise DependencyError("dynamodb", "reading the image", exc, outcome) from exc
        if record.user_id != caller:
            raise NotOwnerError(f"{identity}: only the owner may delete this image")
        try:
            self.metadata.delete_image(record, owner=caller)
        except ImageNotFoundError:
            # Gone since the read: a concurrent delete, or this delete's own transaction
            # retried after its answer was lost. The object goes too, either way.
            self._delete_object(record)
            raise
        except AWS_CALL_FAILURES as exc:
            self._settle_failed_metadata_delete(record, exc)
        self._delete_object(record)

    def _identity_source(self) -> str:
        """Where the caller's identity comes from, as messages name it: the ``X-User-Id``
        header in ``AUTH_MODE=none``, else the bearer token's principal."""
        if self.settings.auth_mode == "none":
            return "X-User-Id"
        return "Authorization (the authenticated principal)"

    def _delete_object(self, record: ImageRecord, what: str | None = None) -> None:
        """Delete ``record``'s object (that of an image whose metadata is gone, or never
        written); if that fails, log it as ``what``: the object is invisible and ``make
        reconcile`` removes it."""
        try:
            self.storage.delete(record.s3_key)
        except Exception:
            what = what or f"object {record.s3_key} of deleted image {record.image_id}"
            logger.exception("%s was not deleted; `make reconcile` will remove it", what)

    def _settle_failed_metadata_delete(self, record: ImageRecord, error: Exception) -> None:
        """After the delete transaction of ``record`` raised ``error``: return if the
        metadata is gone after all (the caller then deletes the object), else raise.

        Raises:
            WriteConflictError: a concurrent transaction on the same items won.
            DependencyError: the image was not deleted, or it cannot be told.
        """
        step = "deleting the image's metadata"
        logger.warning("delete %s: metadata delete failed", record.image_id, exc_info=True)
        if "TransactionConflict" in cancellation_reasons(error):
            raise WriteConflictError(
                "image_id: another request changed this image at the same moment; retry"
            ) from error
        not_deleted = "the image was not deleted; retry"
        if isinstance(error, ClientError):
            raise DependencyError("dynamodb", step, error, not_deleted) from error
        try:
            gone = self.metadata.get_image(record.image_id) is None
        except AWS_CALL_FAILURES:
            outcome = "the image may have been deleted: retry (404 means it was)"
            raise DependencyError("dynamodb", step, error, outcome) from error
        if not gone:
            raise DependencyError("dynamodb", step, error, not_deleted) from error
        logger.warning("delete %s: the transaction committed after all", record.image_id)

    def ingest_uploaded_object(self, key: str) -> None:
        """Ingest the direct upload whose bytes are at ``key`` (being built: issue 10)."""
        raise NotImplementedError(key)

    def sweep(self) -> None:
        """One slice of the sweep (being built: issue 10)."""
        raise NotImplementedError

    def health(self, timeout: float | None = None) -> dict[str, str]:
        """``{"bucket": "ok"|problem, "table": "ok"|problem}``: both checks, run concurrently.

        Each check gets ``timeout`` seconds (default :data:`HEALTH_CHECK_TIMEOUT_SECONDS`)
        from the same start; one that has not answered by then is reported as
        ``"no answer within 5 s"``, and its thread (a daemon) is left to finish or time
        out on its own. A failing check is ``"<exception class>: <message>"``.
        """
        limit = HEALTH_CHECK_TIMEOUT_SECONDS if timeout is None else timeout
        return run_checks({"bucket": self.storage.check, "table": self.metadata.check}, limit)


def run_checks(checks: Mapping[str, Callable[[], object]], timeout: float) -> dict[str, str]:
    """Run every check of ``checks`` at once, each on its own daemon thread, and wait
    at most ``timeout`` seconds in all.

    Returns:
        For each name, in order: ``"ok"`` (the check returned), ``"<exception class>:
        <message>"`` (it raised), or ``"no answer within <timeout> s"``.
    """
    results: dict[str, str] = {}
    lock = threading.Lock()

    def run(name: str, check: Callable[[], object]) -> None:
        try:
            check()
            outcome = "ok"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.setdefault(name, outcome)

    threads = [
        threading.Thread(target=run, args=(name, check), name=f"health-{name}", daemon=True)
        for name, check in checks.items()
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for name in checks:
            results.setdefault(name, f"no answer within {timeout:g} s")
        return {name: results[name] for name in checks}
