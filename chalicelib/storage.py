"""S3 storage of image bytes, and presigned POSTs for direct uploads.

Why a wrapper: the service needs a handful of S3 calls with fixed conventions (one
bucket, keys under ``images/``, long-lived ``Cache-Control`` on every stored image,
presigning against a public endpoint when clients reach S3 at another address than the
Lambda does), and tests inject their own clients. Presigning is local computation, so the
presigning client may point at an address this process cannot reach. GET URLs to the
objects are ``chalicelib.urls``'.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

KEY_PREFIX = "images/"
#: Where direct uploads' presigned POSTs put the bytes: ``uploads/{upload_id}``. The
#: bucket notifies ``on_upload_created`` of objects created under it, and a lifecycle
#: rule expires what is left there.
UPLOAD_PREFIX = "uploads/"
#: Renditions of an image: ``renditions/{image_id}/{version}-{size}.webp``.
RENDITION_PREFIX = "renditions/"
#: ``Cache-Control`` of every stored original and rendition: a key names its bytes (the
#: version in :func:`object_key` and :func:`rendition_key` is their hash), so what a
#: browser or CDN holds under a URL never goes stale. One year, the longest RFC 9111
#: caches are asked to honour; ``immutable`` spares revalidation on reload.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"


def upload_bucket_name() -> str:
    """The bucket ``app.py`` declares its S3 notification on, read at import.

    ``BUCKET_NAME`` when set (``chalice local``, the Lambda); a placeholder while
    ``chalice package`` reads the app, which ``scripts/package_terraform.py`` replaces
    with the bucket ``infra/`` manages.
    """
    return os.environ.get("BUCKET_NAME", "").strip() or "image-service-uploads"


def upload_key(upload_id: str) -> str:
    """The S3 key a direct upload's bytes are posted to: ``uploads/{upload_id}``."""
    return f"{UPLOAD_PREFIX}{upload_id}"


def rendition_key(image_id: str, version: str, size: int) -> str:
    """The S3 key of one rendition: ``renditions/{image_id}/{version}-{size}.webp``
    (``version`` as for :func:`object_key`)."""
    return f"{RENDITION_PREFIX}{image_id}/{version}-{size}.webp"


def object_key(image_id: str, extension: str, version: str = "") -> str:
    """The S3 key of an image's stored original: ``images/{image_id}/{version}.{extension}``,
    or ``images/{image_id}.{extension}`` without a version.

    ``version`` names the content (the ingest pipeline passes the first 16 hex digits
    of its SHA-256), so two ingests of different bytes for one image id never write
    the same key: whichever commits, the other's objects are only orphans.
    """
    if not version:
        return f"{KEY_PREFIX}{image_id}.{extension}"
    return f"{KEY_PREFIX}{image_id}/{version}.{extension}"


def image_id_of_key(key: str) -> str | None:
    """The image id an ``images/`` or ``renditions/`` key belongs to, else None."""
    for prefix in (KEY_PREFIX, RENDITION_PREFIX):
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            return rest.split("/", 1)[0].split(".", 1)[0] or None
    return None


def attachment_disposition(filename: str) -> str:
    """``Content-Disposition: attachment`` naming ``filename`` (RFC 6266, UTF-8 safe)."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "'")
    ascii_name = ascii_name.replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


logger = logging.getLogger(__name__)

_MISSING = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class StoredObject:
    """An object as S3 describes it: ``size_bytes`` in bytes, ``etag`` quoted as S3
    sends it, ``last_modified`` timezone-aware."""

    key: str
    size_bytes: int
    etag: str
    last_modified: datetime


class ImageStorage:
    """The image bucket.

    Args:
        s3: boto3 S3 client used for reads and writes.
        bucket: bucket name (``BUCKET_NAME``).
        presigner: boto3 S3 client used only to sign URLs; defaults to ``s3``. Give one
            built for ``S3_PUBLIC_ENDPOINT_URL`` when clients reach S3 elsewhere.
    """

    def __init__(self, s3: S3Client, bucket: str, presigner: S3Client | None = None) -> None:
        self._s3 = s3
        #: The client URLs are signed for (``chalicelib.urls.S3UrlSigner``) and presigned
        #: POSTs are made with.
        self.presigner = presigner or s3
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str, sha256_hex: str) -> None:
        """Store ``data`` at ``key`` with its content type, :data:`IMMUTABLE_CACHE_CONTROL`
        and its SHA-256 as object metadata."""
        self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=IMMUTABLE_CACHE_CONTROL,
            Metadata={"sha256": sha256_hex},
        )

    def copy(self, source: StoredObject, key: str, content_type: str, sha256_hex: str) -> bool:
        """Copy ``source`` to ``key`` inside the bucket (S3 ``CopyObject``: the bytes never
        leave S3), with its content type, ``Cache-Control`` and SHA-256 as :meth:`put`
        (``MetadataDirective="REPLACE"``: nothing of the source's headers is kept).

        Only the object :meth:`head` saw is copied (``CopySourceIfMatch`` its ETag), and
        the copy's ETag is compared with it afterwards, because emulators ignore that
        condition (moto does).

        Returns:
            True when ``key`` now holds those bytes; False when ``source`` is gone or was
            replaced since (``key`` may then hold other bytes: :meth:`put` them).

        Raises:
            botocore.exceptions.ClientError: any other failure.
        """
        try:
            response = self._s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source.key},
                CopySourceIfMatch=source.etag,
                MetadataDirective="REPLACE",
                ContentType=content_type,
                CacheControl=IMMUTABLE_CACHE_CONTROL,
                Metadata={"sha256": sha256_hex},
            )
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (*_MISSING, "PreconditionFailed"):
                return False
            raise
        return str(response.get("CopyObjectResult", {}).get("ETag", "")) == source.etag

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error if it is already gone)."""
        self._s3.delete_object(Bucket=self.bucket, Key=key)

    def head(self, key: str) -> StoredObject | None:
        """Size, ETag and time of the object at ``key``, or None when there is none.

        Raises:
            botocore.exceptions.ClientError: any failure but a missing object.
        """
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return StoredObject(
            key=key,
            size_bytes=int(response["ContentLength"]),
            etag=str(response["ETag"]),
            last_modified=response["LastModified"],
        )

    def get(self, stored: StoredObject) -> bytes | None:
        """The bytes of ``stored`` exactly as :meth:`head` saw them (``IfMatch`` its
        ETag), or None when the object is gone or was replaced since.

        Raises:
            botocore.exceptions.ClientError: any other failure.
        """
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=stored.key, IfMatch=stored.etag)
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (*_MISSING, "PreconditionFailed"):
                return None
            raise
        data: bytes = response["Body"].read()
        return data

    def presigned_post(
        self, key: str, min_bytes: int, max_bytes: int, expires_in: int
    ) -> dict[str, Any]:
        """An S3 presigned POST that lets a client write ``key`` once it holds the form.

        Its policy pins the bucket and the key, allows ``min_bytes`` to ``max_bytes``
        bytes (``content-length-range``) and expires after ``expires_in`` seconds.

        Returns:
            ``{"url": str, "fields": {name: value}}`` as boto3 builds it: the client
            posts every field, then the file as the part ``file``, to ``url``.
        """
        post: dict[str, Any] = self.presigner.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Conditions=[["content-length-range", min_bytes, max_bytes]],
            ExpiresIn=expires_in,
        )
        return post

    def iter_objects_after(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[list[StoredObject], str | None]:
        """At most ``limit`` objects under ``prefix`` in key order, after ``start_after``.

        Returns:
            ``(objects, next_start_after)``; the second is None when the listing is done.
            One ``ListObjectsV2`` call: the sweep's bounded, resumable slice.
        """
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after:
            request["StartAfter"] = start_after
        response = self._s3.list_objects_v2(**request)
        objects = [
            StoredObject(
                key=item["Key"],
                size_bytes=int(item["Size"]),
                etag=str(item.get("ETag", "")),
                last_modified=item["LastModified"],
            )
            for item in response.get("Contents", [])
        ]
        more = response.get("IsTruncated") and objects
        return objects, objects[-1].key if more else None

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key`` (see :meth:`head`)."""
        return self.head(key) is not None

    def delete_or_log(self, keys: Iterable[str], what: str) -> None:
        """Delete every key; a failure is logged as ``what``, not raised: the callers
        delete bytes no record names (or will name), which are invisible, and the sweep
        removes whatever is left."""
        for key in keys:
            try:
                self.delete(key)
            except Exception:
                logger.exception(
                    "%s: object %s was not deleted; the sweep will remove it", what, key
                )

    def check(self) -> None:
        """Raise the client's error if the bucket does not answer (for ``/health``)."""
        self._s3.head_bucket(Bucket=self.bucket)

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (local tooling and tests only)."""
        region = self._s3.meta.region_name
        extra: dict[str, Any] = {}
        if region and region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        already_there = (
            self._s3.exceptions.BucketAlreadyOwnedByYou,
            self._s3.exceptions.BucketAlreadyExists,
        )
        with contextlib.suppress(*already_there):
            self._s3.create_bucket(Bucket=self.bucket, **extra)
