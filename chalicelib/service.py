"""The image service: what the routes and event handlers call.

- Upload (``POST /images``) and direct uploads (``chalicelib.uploads``) both go through
  the one ingest pipeline (``chalicelib.ingest``): check, process, store, commit.
- List, view and download read metadata and presign URLs to the original and to each
  rendition.
- Delete removes metadata first (readers stop seeing the image at once), then the
  original and every rendition; a failed object delete is logged and left to the sweep.
- A failing dependency (an error answer, throttling after the client's retries, no answer)
  is a :class:`DependencyError` (503) naming the step and what it left.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import Settings, identity_source
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    DependencyError,
    ImageNotFoundError,
    MissingIdentityError,
    NotOwnerError,
    WriteConflictError,
    cancellation_reasons,
    may_have_taken_effect,
)
from chalicelib.imaging import ImageLimits
from chalicelib.ingest import Ingest
from chalicelib.metadata import ImageMetadataStore, ImageRecord
from chalicelib.pagination import PageTokenCodec
from chalicelib.storage import ImageStorage
from chalicelib.uploads import DirectUploads
from chalicelib.validation import ListQuery, UploadRequest, ViewOptions

logger = logging.getLogger(__name__)

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
        self.ingest = Ingest(storage, metadata, ImageLimits.from_settings(settings), clock)
        self.uploads = DirectUploads(storage, metadata, self.ingest, settings, clock)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> ImageService:
        """The service wired to real (or emulated) AWS through ``clients``."""
        clients = clients or AwsClients.from_settings(settings)
        return cls(
            ImageStorage(clients.s3, settings.bucket_name, clients.s3_presigner),
            ImageMetadataStore(clients.dynamodb, settings.table_name, settings.layout),
            settings,
        )

    def upload(self, request: UploadRequest) -> ImageRecord:
        """``POST /images``: the bytes of ``request`` through the ingest pipeline as a
        new image.

        Raises:
            InvalidInputError, PayloadTooLargeError, UnsupportedImageError: the bytes
                break a rule (nothing written).
            DependencyError: S3 or DynamoDB failed; the message says whether the image
                was saved, or that it cannot be told yet (``chalicelib.ingest``).
        """
        return self.ingest.ingest(request, str(uuid.uuid4())).record

    def _with_urls(self, record: ImageRecord, expires_in: int) -> dict[str, Any]:
        """``record`` as the API shows it, each rendition with a presigned ``url``."""
        body = record.to_dict()
        body["renditions"] = [
            {**rendition, "url": self.storage.presigned_get_url(rendition["s3_key"], expires_in)}
            for rendition in body["renditions"]
        ]
        return body

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
        expires_in = self.settings.url_expires_seconds
        items = [
            {
                **self._with_urls(record, expires_in),
                "url": self.storage.presigned_get_url(record.s3_key, expires_in),
            }
            for record in page.records
        ]
        next_token = None if page.next is None else self._tokens.encode(page.next, filters)
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
            body = self._with_urls(record, options.expires_in)
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
        identity = identity_source(self.settings.auth_mode)
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
            self.storage.delete_or_log(record.object_keys, f"deleted image {record.image_id}")
            raise
        except AWS_CALL_FAILURES as exc:
            self._settle_failed_metadata_delete(record, exc)
        self.storage.delete_or_log(record.object_keys, f"deleted image {record.image_id}")

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
        if not may_have_taken_effect(error):
            raise DependencyError("dynamodb", step, error, not_deleted) from error
        try:
            gone = self.metadata.get_image(record.image_id) is None
        except AWS_CALL_FAILURES:
            outcome = "the image may have been deleted: retry (404 means it was)"
            raise DependencyError("dynamodb", step, error, outcome) from error
        if not gone:
            raise DependencyError("dynamodb", step, error, not_deleted) from error
        logger.warning("delete %s: the transaction committed after all", record.image_id)

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
