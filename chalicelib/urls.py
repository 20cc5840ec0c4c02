"""Signed URLs to stored objects that stay the same for a whole cache window.

A browser (or a CDN) reuses what it fetched only when the URL is byte-identical. So every
URL the service hands out for an object is a function of the object's key, the optional
attachment filename and the *window* the request falls in, never of the request's own
second or of which Lambda instance answers it:

- the window of time ``t`` (seconds since the epoch) starts at
  ``floor(t / window) * window`` (``URL_CACHE_WINDOW_SECONDS``, default 3600);
- a URL handed out at ``t`` expires at the window's end plus ``URL_EXPIRES_SECONDS``
  (:func:`window_expiry`), so it is valid at least ``URL_EXPIRES_SECONDS`` after it was
  handed out, and at most that plus one window.

Two signers, chosen by ``IMAGE_URL_SIGNER``:

- :class:`S3UrlSigner` (``s3``): S3 SigV4 presigned URLs whose signing time is the
  window's start. Identical for every instance that signs with the same credentials (one
  IAM user's keys; a Lambda's temporary role credentials differ per instance).
- :class:`CloudFrontUrlSigner` (``cloudfront``): CloudFront canned-policy signed URLs,
  signed with the service's own RSA key, so every instance produces the same URL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import rsa
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.signers import CloudFrontSigner

from chalicelib.storage import attachment_disposition

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

#: Longest ``X-Amz-Expires`` S3 accepts on a SigV4 presigned URL, in seconds (7 days).
S3_MAX_EXPIRES_SECONDS = 7 * 24 * 3600
#: The query parameter that makes S3 answer with ``Content-Disposition`` (attachments).
DISPOSITION_PARAMETER = "response-content-disposition"
_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


def window_expiry(now: datetime, window_seconds: int, expires_seconds: int) -> tuple[int, int]:
    """``(window_start, expires_at)`` in seconds since the epoch for a URL handed out at
    ``now`` (timezone-aware): the start of the cache window ``now`` falls in, and that
    window's end plus ``expires_seconds``."""
    epoch = int(now.timestamp())
    start = epoch - epoch % window_seconds
    return start, start + window_seconds + expires_seconds


class ObjectUrls(Protocol):
    """What the service needs to hand out a URL for an object: ``url(key, now,
    expires_seconds, download_filename)`` and the origin the URLs point at."""

    def url(
        self,
        key: str,
        now: datetime,
        expires_seconds: int,
        download_filename: str | None = None,
    ) -> str:
        """A GET URL for ``key`` handed out at ``now``, valid at least ``expires_seconds``
        from ``now``; with ``download_filename``, the answer is an attachment of that
        name."""
        ...

    def expires_at(self, now: datetime, expires_seconds: int) -> int:
        """When a URL handed out at ``now`` stops working, in seconds since the epoch."""
        ...


class _WindowedUrls:
    """What both signers share: the cache window (``URL_CACHE_WINDOW_SECONDS``) their
    URLs are made for, and when a URL handed out at a moment stops working."""

    window_seconds: int

    def expires_at(self, now: datetime, expires_seconds: int) -> int:
        """See :func:`window_expiry`."""
        return window_expiry(now, self.window_seconds, expires_seconds)[1]


class S3UrlSigner(_WindowedUrls):
    """S3 presigned GET URLs signed as of the start of the cache window.

    How: the presigning client builds the unsigned request URL exactly as botocore would
    for ``GetObject`` (endpoint, addressing style, ``S3_PUBLIC_ENDPOINT_URL``, the
    ``response-content-disposition`` parameter): it presigns once and the ``X-Amz-*``
    parameters are dropped. That URL is then signed with botocore's public
    :class:`botocore.auth.S3SigV4QueryAuth` on an :class:`botocore.awsrequest.AWSRequest`
    whose signing time is the window's start (:class:`_WindowQueryAuth`). The result is
    byte-identical to what ``generate_presigned_url`` makes at that second (a unit test
    compares them), with ``X-Amz-Expires`` = window + ``expires_seconds``.

    Args:
        presigner: boto3 S3 client the URLs are built for (its endpoint and region).
        bucket: the image bucket.
        window_seconds: ``URL_CACHE_WINDOW_SECONDS``.
        credentials: botocore credentials to sign with (``Session.get_credentials()``).

    Raises:
        ValueError: ``window_seconds`` plus an expiry is more than S3's 7 days (raised by
            :meth:`url`; ``Settings`` refuses such a configuration up front).
    """

    def __init__(
        self, presigner: S3Client, bucket: str, window_seconds: int, credentials: Any
    ) -> None:
        self._presigner = presigner
        self.bucket = bucket
        self.window_seconds = window_seconds
        self._credentials = credentials

    def url(
        self,
        key: str,
        now: datetime,
        expires_seconds: int,
        download_filename: str | None = None,
    ) -> str:
        """The presigned GET URL of ``key`` for the window of ``now`` (see the class)."""
        start, expires_at = window_expiry(now, self.window_seconds, expires_seconds)
        lifetime = expires_at - start
        if lifetime > S3_MAX_EXPIRES_SECONDS:
            raise ValueError(f"an S3 presigned URL lives at most 7 days, not {lifetime} s")
        request = AWSRequest(method="GET", url=self.unsigned_url(key, download_filename))
        auth = _WindowQueryAuth(
            self._credentials,
            "s3",
            self._presigner.meta.region_name,
            expires=lifetime,
            signing_time=datetime.fromtimestamp(start, UTC),
        )
        auth.add_auth(request)
        return str(request.url)

    def unsigned_url(self, key: str, download_filename: str | None = None) -> str:
        """The ``GetObject`` URL of ``key`` as botocore addresses it, without any
        ``X-Amz-*`` parameter (presigning is local computation; nothing is sent)."""
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if download_filename is not None:
            params["ResponseContentDisposition"] = attachment_disposition(download_filename)
        presigned: str = self._presigner.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=1
        )
        parts = urlsplit(presigned)
        query = [
            (name, value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if not name.startswith("X-Amz-")
        ]
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class _WindowQueryAuth(S3SigV4QueryAuth):
    """:class:`botocore.auth.S3SigV4QueryAuth` that signs as of ``signing_time``
    (timezone-aware) instead of the current time.

    SigV4 takes the signing time from ``request.context["timestamp"]``, which ``add_auth``
    sets to the current time before anything is derived from it; this class sets it again
    in ``_modify_request_before_signing``, the first step that reads it (the query's
    ``X-Amz-Date`` and credential scope, then the string to sign and the signing key).
    That is the one botocore method overridden; the byte-identity test against botocore's
    own ``generate_presigned_url`` fails if a botocore release moves the step.
    """

    def __init__(
        self,
        credentials: Any,
        service_name: str,
        region_name: str,
        expires: int,
        signing_time: datetime,
    ) -> None:
        super().__init__(credentials, service_name, region_name, expires=expires)
        self._timestamp = signing_time.astimezone(UTC).strftime(_SIGV4_TIMESTAMP)

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._timestamp
        super()._modify_request_before_signing(request)  # type: ignore[misc]


def rsa_sha1_signer(private_key_pem: bytes) -> Callable[[bytes], bytes]:
    """The ``rsa_signer`` :class:`botocore.signers.CloudFrontSigner` needs: RSASSA-PKCS1-v1_5
    with SHA-1, what CloudFront verifies signed URLs with (botocore's documented example).

    Signed with the pure-Python ``rsa`` package: it is vendored into the Lambda as is,
    where ``cryptography``'s available wheels need a newer glibc than Lambda's python3.11
    runtime has (``make keys`` and the tests use ``cryptography`` to make and check keys).

    Raises:
        ValueError: ``private_key_pem`` is not an unencrypted PKCS#1 RSA private key in PEM
            (``-----BEGIN RSA PRIVATE KEY-----``, what ``make keys`` and ``openssl
            genrsa`` write).
    """
    try:
        key = rsa.PrivateKey.load_pkcs1(private_key_pem, "PEM")
    except Exception as error:  # rsa/pyasn1 raise several kinds for a malformed key
        raise ValueError(f"the CloudFront private key is not a PKCS#1 RSA PEM: {error}") from None

    def sign(message: bytes) -> bytes:
        return rsa.sign(message, key, "SHA-1")

    return sign


class CloudFrontUrlSigner(_WindowedUrls):
    """CloudFront canned-policy signed URLs: ``https://{domain}/{key}?Expires=…&Signature=…
    &Key-Pair-Id=…``, expiring at the window's end plus the requested lifetime.

    Attachments add ``response-content-disposition`` to the URL before it is signed (the
    canned policy covers the whole URL, query included). The distribution forwards that
    parameter to the S3 origin, which honours it because the Origin Access Control signs
    the origin request, and its cache policy keys on it, so the inline and the attachment
    answer are cached apart.

    Args:
        domain: the distribution's domain name (``CLOUDFRONT_DOMAIN``).
        key_pair_id: the id of the CloudFront public key in the trusted key group
            (``CLOUDFRONT_KEY_PAIR_ID``).
        private_key: returns the matching RSA private key, PEM (see
            :func:`load_private_key`); called once, when the first URL is signed, so a
            function that never hands out a URL (the upload handler, the sweep) never
            reads it.
        window_seconds: ``URL_CACHE_WINDOW_SECONDS``.
    """

    def __init__(
        self,
        domain: str,
        key_pair_id: str,
        private_key: Callable[[], bytes],
        window_seconds: int,
    ) -> None:
        self.domain = domain
        self.key_pair_id = key_pair_id
        self.window_seconds = window_seconds
        self._private_key = private_key

    @functools.cached_property
    def _signer(self) -> CloudFrontSigner:
        return CloudFrontSigner(self.key_pair_id, rsa_sha1_signer(self._private_key()))

    def url(
        self,
        key: str,
        now: datetime,
        expires_seconds: int,
        download_filename: str | None = None,
    ) -> str:
        """The signed URL of ``key`` for the window of ``now`` (see the class)."""
        url = f"https://{self.domain}/{quote(key, safe='/')}"
        if download_filename is not None:
            disposition = attachment_disposition(download_filename)
            url += "?" + urlencode({DISPOSITION_PARAMETER: disposition}, quote_via=quote)
        expires_at = datetime.fromtimestamp(self.expires_at(now, expires_seconds), UTC)
        signed: str = self._signer.generate_presigned_url(url, date_less_than=expires_at)
        return signed


def load_private_key(ssm: Any | None, parameter: str | None, path: str | None) -> bytes:
    """The CloudFront private key PEM: the SecureString SSM parameter ``parameter``
    (``CLOUDFRONT_PRIVATE_KEY_PARAMETER``, decrypted by SSM; the service reads it once,
    when it is built), else
    the file ``path`` (``CLOUDFRONT_PRIVATE_KEY_FILE``, local runs and tests).

    Raises:
        ValueError: neither is given.
        botocore.exceptions.ClientError: SSM refused (no such parameter, no permission).
        OSError: the file cannot be read.
    """
    if parameter:
        if ssm is None:
            raise ValueError("reading CLOUDFRONT_PRIVATE_KEY_PARAMETER needs an SSM client")
        response = ssm.get_parameter(Name=parameter, WithDecryption=True)
        return str(response["Parameter"]["Value"]).encode()
    if path:
        with open(path, "rb") as handle:
            return handle.read()
    raise ValueError(
        "IMAGE_URL_SIGNER=cloudfront needs CLOUDFRONT_PRIVATE_KEY_PARAMETER or "
        "CLOUDFRONT_PRIVATE_KEY_FILE"
    )
