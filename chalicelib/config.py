"""Settings read once per process from the environment.

Each Chalice stage sets these in `.chalice/config.json`; the deployed Lambda gets them
from Terraform. Endpoints for emulators come from boto3's own variables
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_DYNAMODB``), which
boto3 reads itself, so no endpoint is written in the code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
#: HS256 keys shorter than the hash output weaken the token signature (RFC 7518 3.2).
MIN_TOKEN_SECRET_BYTES = 32


class ConfigurationError(Exception):
    """A required environment variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Runtime configuration of the image service.

    Attributes:
        bucket_name: S3 bucket holding image bytes (``BUCKET_NAME``).
        table_name: DynamoDB table holding metadata (``TABLE_NAME``).
        token_secret: HMAC key that signs pagination tokens (``TOKEN_SECRET``, at least
            32 bytes).
        max_image_bytes: largest accepted upload, in bytes (``MAX_IMAGE_BYTES``,
            default 10 MiB).
        max_image_pixels: largest accepted width x height, in pixels; larger images
            are refused as decompression bombs (``MAX_IMAGE_PIXELS``, default 50 M).
        url_expires_seconds: lifetime of presigned URLs in listings, and the default
            for views, in seconds (``URL_EXPIRES_SECONDS``, default 900).
        s3_public_endpoint_url: endpoint presigned URLs are signed for, when clients
            reach S3 at another address than the service does
            (``S3_PUBLIC_ENDPOINT_URL``; unset means the service's own endpoint).
        auth_enabled: when true, the caller's identity is the API Gateway authorizer's
            principal, never a header (``AUTH_ENABLED``, default false).
        s3_path_style: address buckets as ``endpoint/bucket/key`` instead of
            ``bucket.endpoint/key``; true when any S3 endpoint is overridden (emulators:
            ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``S3_PUBLIC_ENDPOINT_URL``),
            virtual-hosted style on AWS.
    """

    bucket_name: str
    table_name: str
    token_secret: str
    max_image_bytes: int = 10 * MIB
    max_image_pixels: int = 50_000_000
    url_expires_seconds: int = 900
    s3_public_endpoint_url: str | None = None
    auth_enabled: bool = False
    s3_path_style: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigurationError: a required variable is unset or a number is malformed.
        """
        env = os.environ if environ is None else environ
        public_endpoint = env.get("S3_PUBLIC_ENDPOINT_URL") or None
        endpoint_overridden = any(
            env.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
        )
        return cls(
            bucket_name=_required(env, "BUCKET_NAME"),
            table_name=_required(env, "TABLE_NAME"),
            token_secret=_token_secret(env),
            max_image_bytes=_positive_int(env, "MAX_IMAGE_BYTES", 10 * MIB),
            max_image_pixels=_positive_int(env, "MAX_IMAGE_PIXELS", 50_000_000),
            url_expires_seconds=_positive_int(env, "URL_EXPIRES_SECONDS", 900),
            s3_public_endpoint_url=public_endpoint,
            auth_enabled=env.get("AUTH_ENABLED", "false").lower() in ("1", "true", "yes"),
            s3_path_style=endpoint_overridden or public_endpoint is not None,
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _token_secret(env: Mapping[str, str]) -> str:
    secret = _required(env, "TOKEN_SECRET")
    if len(secret.encode()) < MIN_TOKEN_SECRET_BYTES:
        raise ConfigurationError(
            f"TOKEN_SECRET must be at least {MIN_TOKEN_SECRET_BYTES} bytes (HS256 key)"
        )
    return secret


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value
