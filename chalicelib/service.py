"""The image service: what the routes and event handlers call.

- Upload (``POST /images``) and direct uploads (``chalicelib.uploads``) both go through
  the one ingest pipeline (``chalicelib.ingest``): check, process, store, commit.
- List, view and download read metadata and hand out signed URLs to the original and to
  each rendition (``chalicelib.urls``: the same URL for a whole cache window).
- Edit (``PATCH``) reads the image, applies the patch as version + 1 and writes it in
  one conditional transaction (``ImageMetadataStore.update_image``); a lost race is
  re-read and retried (:data:`MAX_EDIT_ATTEMPTS`), or is a 412 under ``If-Match``; a
  lost answer is settled by driving the same transaction again and reading back, and
  is never answered "not changed" when the edit may have committed.
- Delete removes metadata first (readers stop seeing the image at once), then the
  original and every rendition; a failed object delete is logged and left to the sweep.
- A failing dependency (an error answer, throttling after the client's retries, no answer)
  is a :class:`DependencyError` (503) naming the step and what it left.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import Settings, identity_source
from chalicelib.errors import (
    AWS_CALL_FAILURES,
    DependencyError,
    ImageChangedError,
    ImageNotFoundError,
    MissingIdentityError,
    NotOwnerError,
    OutcomeUnknownError,
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
from chalicelib.urls import CloudFrontUrlSigner, ObjectUrls, S3UrlSigner, load_private_key
from chalicelib.validation import (
    IfMatch,
    ImagePatch,
    ListQuery,
    UploadRequest,
    ViewOptions,
    format_timestamp,
)

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

#: How many times an edit without ``If-Match`` re-reads and tries again when another
#: change of the image committed between its read and its write (then 409).
MAX_EDIT_ATTEMPTS = 3
#: What a second attempt of a lost edit may raise without telling whether it committed.
_EDIT_FAILURES: tuple[type[Exception], ...] = (
    WriteConflictError,
    OutcomeUnknownError,
    *AWS_CALL_FAILURES,
)


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients the service uses, created once per process.

    ``s3_presigner`` signs URLs only; it differs from ``s3`` when clients reach S3 at a
    public endpoint that is not the one this process uses. ``credentials`` (botocore's,
    from the session) sign the ``s3`` mode's URLs; ``ssm`` reads the CloudFront private
    key, only built when ``IMAGE_URL_SIGNER=cloudfront`` names an SSM parameter.
    """

    s3: Any
    dynamodb: Any
    s3_presigner: Any
    credentials: Any = None
    ssm: Any = None

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
        ssm = None
        if settings.image_url_signer == "cloudfront" and settings.cloudfront_private_key_parameter:
            ssm = session.client("ssm", config=base)
        return cls(
            s3=s3,
            dynamodb=dynamodb,
            s3_presigner=presigner,
            credentials=session.get_credentials(),
            ssm=ssm,
        )


def object_urls(settings: Settings, clients: AwsClients) -> ObjectUrls:
    """The URL signer ``IMAGE_URL_SIGNER`` asks for (``chalicelib.urls``). ``cloudfront``
    reads its private key once per process, when it signs its first URL (a failure
    there raises ``ValueError``, ``botocore.exceptions.ClientError`` or ``OSError``, see
    :func:`chalicelib.urls.load_private_key`)."""
    window = settings.url_cache_window_seconds
    if settings.image_url_signer == "cloudfront":
        return CloudFrontUrlSigner(
            settings.cloudfront_domain or "",
            settings.cloudfront_key_pair_id or "",
            functools.partial(
                load_private_key,
                clients.ssm,
                settings.cloudfront_private_key_parameter,
                settings.cloudfront_private_key_file,
            ),
            window,
        )
    credentials = clients.credentials or boto3.session.Session().get_credentials()
    return S3UrlSigner(clients.s3_presigner, settings.bucket_name, window, credentials)


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
        clock: returns the current time, timezone-aware (tests pass a fixed one); URLs
            are signed for the cache window it falls in.
        urls: signs the URLs handed out; default: ``s3`` signing with ``storage``'s
            presigner and the default session's credentials.
        sleep: pauses for a number of seconds: ``complete``'s wait for another
            arrival's outcome (tests pass one that does not sleep).
    """

    def __init__(
        self,
        storage: ImageStorage,
        metadata: ImageMetadataStore,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        urls: ObjectUrls | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.urls = urls or S3UrlSigner(
            storage.presigner,
            storage.bucket,
            settings.url_cache_window_seconds,
            boto3.session.Session().get_credentials(),
        )
        self.metadata = metadata
        self.settings = settings
        self._tokens = PageTokenCodec(settings.token_secret)
        self._clock = clock
        self.ingest = Ingest(storage, metadata, ImageLimits.from_settings(settings), clock)
        self.uploads = DirectUploads(storage, metadata, self.ingest, settings, clock, sleep)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> ImageService:
        """The service wired to real (or emulated) AWS through ``clients``."""
        clients = clients or AwsClients.from_settings(settings)
        return cls(
            ImageStorage(clients.s3, settings.bucket_name, clients.s3_presigner),
            ImageMetadataStore(clients.dynamodb, settings.table_name, settings.layout),
            settings,
            urls=object_urls(settings, clients),
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

    def _with_urls(self, record: ImageRecord, now: datetime, expires_in: int) -> dict[str, Any]:
        """``record`` as the API shows it, each rendition with a ``url`` signed for the
        cache window of ``now``, valid at least ``expires_in`` seconds."""
        body = record.to_dict()
        body["renditions"] = [
            {**rendition, "url": self.urls.url(rendition["s3_key"], now, expires_in)}
            for rendition in body["renditions"]
        ]
        return body

    def list_images(self, query: ListQuery) -> dict[str, Any]:
        """A page of images, newest first: ``{"items", "count", "next_token"}``.

        Each item is a record plus ``url``, a signed GET URL that is the same for the
        whole cache window and valid at least ``URL_EXPIRES_SECONDS`` from now.

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
        now = self._clock()
        expires_in = self.settings.url_expires_seconds
        items = [
            {
                **self._with_urls(record, now, expires_in),
                "url": self.urls.url(record.s3_key, now, expires_in),
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
        """The record plus ``download_url`` and ``expires_in`` unless
        ``metadata_only``; with ``download``, ``download_url`` forces an attachment named
        after the original filename. The URLs (renditions' too) are the same for the
        whole cache window; ``expires_in`` is how many seconds from now they keep working:
        at least the requested ``options.expires_in``, at most that plus one window.

        Raises:
            ImageNotFoundError: no such image.
            DependencyError: DynamoDB failed (nothing was changed).
        """
        with _reading("reading the image"):
            record = self.get_image(image_id)
        body = record.to_dict()
        if not options.metadata_only:
            now = self._clock()
            body = self._with_urls(record, now, options.expires_in)
            body["download_url"] = self.urls.url(
                record.s3_key,
                now,
                options.expires_in,
                download_filename=record.filename if options.download else None,
            )
            expires_at = self.urls.expires_at(now, options.expires_in)
            body["expires_in"] = expires_at - int(now.timestamp())
        return body

    def download_url(self, image_id: str) -> str:
        """A signed URL that downloads ``image_id`` as an attachment, the same for the
        whole cache window and valid at least ``URL_EXPIRES_SECONDS`` from now.

        Raises:
            ImageNotFoundError: no such image.
            DependencyError: DynamoDB failed (nothing was changed).
        """
        with _reading("reading the image"):
            record = self.get_image(image_id)
        return self.urls.url(
            record.s3_key,
            self._clock(),
            self.settings.url_expires_seconds,
            download_filename=record.filename,
        )

    def edit(
        self, image_id: str, patch: ImagePatch, caller: str | None, if_match: IfMatch | None
    ) -> ImageRecord:
        """``PATCH /images/{image_id}``: apply ``patch`` to the image if ``caller`` owns
        it, as its next version, with ``updated_at`` now; ``created_at`` and the image's
        place in every listing stay. Returns the record as stored.

        Without ``if_match`` the patch applies to the current version: a change that
        commits between this read and this write is re-read and the patch applied on
        top, up to :data:`MAX_EDIT_ATTEMPTS` times.

        Raises:
            MissingIdentityError: ``caller`` is None.
            ImageNotFoundError: no such image (or it was deleted meanwhile).
            NotOwnerError: ``caller`` is not the owner.
            ImageChangedError: ``if_match`` names none of the current version (412).
            InvalidInputError: the new tags rewrite more items than one transaction holds.
            WriteConflictError: other changes kept winning the race (409); retry.
            DependencyError: DynamoDB failed; the message says whether the edit was
                applied, or that it cannot be told (never "not changed" when it may
                have committed).
        """
        identity = identity_source(self.settings.auth_mode)
        if not caller:
            raise MissingIdentityError(f"{identity}: missing; say who you are to edit an image")
        for _ in range(MAX_EDIT_ATTEMPTS):
            with _reading("reading the image"):
                current = self.get_image(image_id)
            if current.user_id != caller:
                raise NotOwnerError(f"{identity}: only the owner may edit this image")
            if if_match is not None and not if_match.matches(current.version):
                raise ImageChangedError(
                    f'If-Match: the image is at version "{current.version}" now; '
                    "read it again and reapply the change"
                )
            edited = replace(
                current,
                title=current.title if patch.title is None else patch.title,
                description=current.description if patch.description is None else patch.description,
                tags=current.tags if patch.tags is None else patch.tags,
                metadata=current.metadata if patch.metadata is None else patch.metadata,
                updated_at=format_timestamp(self._clock()),
                version=current.version + 1,
            )
            try:
                self.metadata.update_image(current, edited, owner=caller)
                return edited
            except WriteConflictError:
                continue  # re-read: gone (404), another owner (403), changed (412 or again)
            except OutcomeUnknownError as exc:
                return self._settle_lost_edit(current, edited, caller, exc)
            except AWS_CALL_FAILURES as exc:
                logger.warning("edit %s failed", image_id, exc_info=True)
                raise DependencyError(
                    "dynamodb", "saving the edit", exc, "the image was not changed; retry"
                ) from exc
        raise WriteConflictError(
            "image_id: other changes of this image kept committing first; retry"
        )

    def _settle_lost_edit(
        self, current: ImageRecord, edited: ImageRecord, owner: str, lost: OutcomeUnknownError
    ) -> ImageRecord:
        """The edit's transaction lost its answer: it may have committed, or commit
        later. Drive the same transaction once more (its version condition makes that
        safe), then read: ``edited`` stored means it committed.

        Raises:
            DependencyError: it cannot be told; the message says how to find out.
        """
        first_error = lost.__cause__ if isinstance(lost.__cause__, Exception) else lost
        logger.warning("edit %s: the transaction's answer was lost; again", current.image_id)
        try:
            self.metadata.update_image(current, edited, owner=owner)
            return edited
        except _EDIT_FAILURES:
            logger.warning("edit %s: the second attempt did not commit", current.image_id)
        try:
            stored = self.metadata.get_image(current.image_id)
        except AWS_CALL_FAILURES:
            stored = None
        if stored == edited:
            return edited
        outcome = (
            f"the edit may have been applied: GET /images/{current.image_id} tells "
            f'(ETag "{edited.version}" with updated_at {edited.updated_at} if it was)'
        )
        raise DependencyError("dynamodb", "saving the edit", first_error, outcome) from first_error

    def delete(self, image_id: str, caller: str | None) -> None:
        """Delete ``image_id`` if ``caller`` owns it: metadata first, then the object.

        Raises:
            MissingIdentityError: ``caller`` is None.
            ImageNotFoundError: no such image.
            NotOwnerError: ``caller`` is not the owner.
            WriteConflictError: another request changed the image at the same moment
                (an edit that commits between the read and the delete is re-read and the
                delete tried again, up to :data:`MAX_EDIT_ATTEMPTS` times).
            DependencyError: DynamoDB failed; the message says whether the image was
                deleted. (An S3 failure after the metadata is gone is only logged.)
        """
        identity = identity_source(self.settings.auth_mode)
        if not caller:
            raise MissingIdentityError(f"{identity}: missing; say who you are to delete an image")
        for _ in range(MAX_EDIT_ATTEMPTS):
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
            except WriteConflictError:
                continue  # edited since the read: its membership items moved; read again
            except ImageNotFoundError:
                # Gone since the read: a concurrent delete, or this delete's own
                # transaction retried after its answer was lost. The object goes too.
                self.storage.delete_or_log(record.object_keys, f"deleted image {image_id}")
                raise
            except AWS_CALL_FAILURES as exc:
                self._settle_failed_metadata_delete(record, exc)
            self.storage.delete_or_log(record.object_keys, f"deleted image {record.image_id}")
            return
        raise WriteConflictError("image_id: edits of this image kept committing first; retry")

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
