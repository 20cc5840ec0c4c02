"""The image service: joins S3 storage and DynamoDB metadata under the consistency rules.

- Upload writes the object first, then the metadata transaction; if the transaction
  fails, the object is deleted before the error propagates. No request leaves an object
  without metadata or metadata without an object.
- Delete removes metadata first (readers stop seeing the image at once), then the
  object; a failed object delete is logged and left to ``python -m chalicelib.reconcile``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import Settings
from chalicelib.errors import ImageNotFoundError, MissingIdentityError, NotOwnerError
from chalicelib.metadata import ImageMetadataStore, ImageRecord
from chalicelib.pagination import PageTokenCodec
from chalicelib.storage import ImageStorage, object_key
from chalicelib.validation import (
    ListQuery,
    UploadRequest,
    ViewOptions,
    check_declared_type,
    format_timestamp,
    inspect_image,
    sanitize_filename,
)

logger = logging.getLogger(__name__)


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
    def from_settings(cls, settings: Settings) -> AwsClients:
        """Clients for the default session; endpoints come from boto3's own variables
        (``AWS_ENDPOINT_URL`` …), the presigner's from ``S3_PUBLIC_ENDPOINT_URL``."""
        session = boto3.session.Session()
        s3_config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.s3_path_style else "virtual"},
        )
        s3 = session.client("s3", config=s3_config)
        presigner = s3
        if settings.s3_public_endpoint_url:
            presigner = session.client(
                "s3", config=s3_config, endpoint_url=settings.s3_public_endpoint_url
            )
        return cls(s3=s3, dynamodb=session.client("dynamodb"), s3_presigner=presigner)


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
            PayloadTooLargeError, UnsupportedImageError: see :func:`inspect_image`.
            WriteConflictError: the metadata transaction found an existing item.
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
        self.storage.put(record.s3_key, request.data, record.content_type, record.sha256)
        try:
            self.metadata.put_image(record)
        except BaseException:
            logger.warning("metadata write failed for %s; deleting its object", image_id)
            self.storage.delete(record.s3_key)
            raise
        return record

    def list_images(self, query: ListQuery) -> dict[str, Any]:
        """A page of images, newest first: ``{"items", "count", "next_token"}``.

        Each item is a record plus ``url``, a presigned GET valid
        ``URL_EXPIRES_SECONDS``.

        Raises:
            InvalidInputError: ``next_token`` is modified or from another query.
        """
        filters = query.filters()
        start = None
        if query.next_token is not None:
            start = self._tokens.decode(query.next_token, filters)
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
        """
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
        """
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
        """
        if not caller:
            raise MissingIdentityError("X-User-Id: missing; say who you are to delete an image")
        record = self.get_image(image_id)
        if record.user_id != caller:
            raise NotOwnerError("X-User-Id: only the owner may delete this image")
        self.metadata.delete_image(record, owner=caller)
        try:
            self.storage.delete(record.s3_key)
        except Exception:
            logger.exception(
                "object %s of deleted image %s was not deleted; `make reconcile` will remove it",
                record.s3_key,
                image_id,
            )

    def health(self) -> dict[str, str]:
        """``{"bucket": "ok"|error, "table": "ok"|error}`` — every check, even after a failure."""
        checks: dict[str, str] = {}
        for name, check in (("bucket", self.storage.check), ("table", self.metadata.check)):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {exc}"
        return checks
