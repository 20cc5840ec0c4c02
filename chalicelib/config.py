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
from typing import Literal

from chalicelib.keys import MAX_SHARDS, ShardLayout
from chalicelib.validation import MAX_URL_EXPIRES

MIB = 1024 * 1024
#: Lambda refuses a synchronous invocation whose payload (here: API Gateway's event, a
#: JSON document) is larger than this many bytes (6 MiB).
LAMBDA_PAYLOAD_LIMIT_BYTES = 6_291_456
#: What the event carries besides the body, at most: ``headers`` and
#: ``multiValueHeaders`` (the same headers twice; API Gateway allows 10 KiB of request
#: line and headers), the query string twice, ``path``, ``pathParameters`` and
#: ``requestContext`` (about 1.5 KiB). 64 KiB is twice the worst case of those, plus JSON
#: escaping.
EVENT_ENVELOPE_BYTES = 64 * 1024
#: Largest request body ``POST /images`` accepts, in bytes: 4,669,440 (4.45 MiB). API
#: Gateway hands a binary body (``multipart/form-data``) to Lambda base64-encoded, 4
#: characters for every 3 bytes, so a body of B bytes makes an event of 4/3 B plus the
#: envelope, which must fit Lambda's limit: (6,291,456 - 65,536) // 4 * 3. A larger body
#: never reaches the function on AWS, so the app refuses it itself (413 naming
#: ``POST /uploads``) and ``chalice local`` answers as AWS would. The same limit holds for
#: the JSON form, whose text body API Gateway does not re-encode: one limit for the
#: route, and its base64 image is then at most about 3.3 MiB.
MAX_REQUEST_BYTES = (LAMBDA_PAYLOAD_LIMIT_BYTES - EVENT_ENVELOPE_BYTES) // 4 * 3
#: Shard counts a deployment gets when ``FEED_SHARDS``/``TAG_SHARDS`` are unset: what
#: keeps every partition under half its write limit at 10,000 uploads per second
#: (``bench/scale.py``; the README's *Data model*).
DEFAULT_FEED_SHARDS = 64
DEFAULT_TAG_SHARDS = 16
#: HS256 keys shorter than the hash output weaken the token signature (RFC 7518 3.2).
MIN_TOKEN_SECRET_BYTES = 32


#: ``AUTH_MODE``: who the caller is. ``none``: whoever the request names (``X-User-Id``);
#: ``jwt``: the ``sub`` of an HS256 bearer token this app's Chalice authorizer verified;
#: ``cognito``: the ``sub`` claim of a token API Gateway's Cognito authorizer verified.
AuthMode = Literal["none", "jwt", "cognito"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "jwt", "cognito")
DEFAULT_JWT_ISSUER = "image-service"
DEFAULT_JWT_AUDIENCE = "image-service"

#: ``IMAGE_URL_SIGNER``: how URLs to stored objects are signed (``chalicelib.urls``).
#: ``s3``: S3 presigned URLs signed as of the cache window's start; ``cloudfront``:
#: CloudFront canned-policy signed URLs with the service's own key pair.
UrlSignerKind = Literal["s3", "cloudfront"]
URL_SIGNERS: tuple[UrlSignerKind, ...] = ("s3", "cloudfront")
#: Longest lifetime of an S3 SigV4 presigned URL, in seconds (7 days): a cache window
#: plus the longest expiry a view may ask for (3600 s) must fit in it.
S3_PRESIGN_LIMIT_SECONDS = 7 * 24 * 3600


def identity_source(mode: AuthMode) -> str:
    """Where the caller's identity comes from in ``mode``, as error messages name it:
    the ``X-User-Id`` header in ``none``, else the bearer token's principal."""
    return "X-User-Id" if mode == "none" else "Authorization (the authenticated principal)"


class ConfigurationError(Exception):
    """A required environment variable is missing or malformed."""


@dataclass(frozen=True)
class JwtSettings:
    """What a bearer token must satisfy in ``AUTH_MODE=jwt`` (see ``chalicelib.auth``).

    Attributes:
        secret: HS256 key the tokens are signed with (``JWT_SECRET``, at least 32 bytes).
        issuer: required ``iss`` claim (``JWT_ISSUER``, default ``image-service``).
        audience: required ``aud`` claim (``JWT_AUDIENCE``, default ``image-service``).
    """

    secret: str
    issuer: str = DEFAULT_JWT_ISSUER
    audience: str = DEFAULT_JWT_AUDIENCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JwtSettings:
        """Read ``JWT_SECRET``, ``JWT_ISSUER``, ``JWT_AUDIENCE`` (default ``os.environ``).

        Raises:
            ConfigurationError: ``JWT_SECRET`` is unset or shorter than 32 bytes.
        """
        env = os.environ if environ is None else environ
        return cls(
            secret=_secret(env, "JWT_SECRET"),
            issuer=env.get("JWT_ISSUER", "").strip() or DEFAULT_JWT_ISSUER,
            audience=env.get("JWT_AUDIENCE", "").strip() or DEFAULT_JWT_AUDIENCE,
        )


def auth_mode(environ: Mapping[str, str] | None = None) -> AuthMode:
    """``AUTH_MODE`` from ``environ`` (default ``os.environ``): none (when unset), jwt, cognito.

    Raises:
        ConfigurationError: any other value.
    """
    env = os.environ if environ is None else environ
    value = env.get("AUTH_MODE", "").strip().lower() or "none"
    if value not in AUTH_MODES:
        raise ConfigurationError(
            f"AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {env.get('AUTH_MODE')!r}"
        )
    return value


def cors_allow_origins(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``CORS_ALLOW_ORIGINS`` from ``environ`` (default ``os.environ``): the origins, or
    ``("*",)``, or empty (no cross-origin access). Needs no other setting, so the CORS
    headers of routes that use no AWS client (``/openapi.json``) never build one.

    Raises:
        ConfigurationError: an entry is neither ``*`` nor ``scheme://host[:port]``.
    """
    return _origins(os.environ if environ is None else environ, "CORS_ALLOW_ORIGINS")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration of the image service.

    Attributes:
        bucket_name: S3 bucket holding image bytes (``BUCKET_NAME``).
        table_name: DynamoDB table holding metadata (``TABLE_NAME``).
        token_secret: HMAC key that signs pagination tokens (``TOKEN_SECRET``, at least
            32 bytes).
        max_image_bytes: largest accepted image, in bytes (``MAX_IMAGE_BYTES``,
            default 50 MiB; direct uploads carry images up to it, ``POST /images`` is
            further bounded by :data:`MAX_REQUEST_BYTES`).
        max_request_bytes: largest request body of ``POST /images``, in bytes (default
            :data:`MAX_REQUEST_BYTES`, what API Gateway and Lambda can carry; not read
            from the environment: tests pass a smaller one).
        max_image_pixels: largest accepted width x height of one frame, in pixels;
            larger images are refused as decompression bombs (``MAX_IMAGE_PIXELS``,
            default 50 M).
        max_decode_bytes: most memory decoding one upload may hold at once: what the
            decoder and each conversion hold for its mode and bit depth (an animation's
            frames held at the same time, not all of them), checked from the header
            before decoding (``MAX_DECODE_BYTES``, default 256 MiB).
        max_decoded_pixels: most pixels of all the frames of one upload together, the
            decoding work (``MAX_DECODED_PIXELS``, default 1,000,000,000).
        max_animation_frames: most frames an animated GIF, WebP or PNG may have
            (``MAX_ANIMATION_FRAMES``, default 300).
        rendition_sizes: longer side, in pixels, of each WebP rendition, ascending
            (``RENDITION_SIZES``, comma-separated, default ``320,640,1080``).
        upload_expires_seconds: lifetime of a direct upload's presigned POST and of its
            pending item, in seconds (``UPLOAD_EXPIRES_SECONDS``, default 3600).
        upload_lease_seconds: how long whoever processes a direct upload (``complete``,
            the S3 event, the sweep) holds it before another may take it over, in
            seconds (``UPLOAD_LEASE_SECONDS``, default 180: longer than the timeout of
            every function that processes uploads, 120 s for the S3-event handler,
            so a live holder never loses it and a dead one's expires).
        cors_allow_origins: origins browsers may call the API and the bucket from
            (``CORS_ALLOW_ORIGINS``, comma-separated, ``*`` allowed; empty, the
            default, means same origin only).
        sweep_grace_seconds: age under which the sweep leaves an object or item alone,
            in seconds (``SWEEP_GRACE_SECONDS``, default 3600): a request may still be
            writing it.
        url_expires_seconds: least lifetime of the URLs in listings after they are handed
            out, and the default for views, in seconds (``URL_EXPIRES_SECONDS``, default
            900).
        url_cache_window_seconds: every URL to an object is the same for every request
            within one window of this many seconds (``URL_CACHE_WINDOW_SECONDS``, default
            3600; windows start at multiples of it since the epoch), and lives until the
            window's end plus its expiry (``chalicelib.urls``).
        image_url_signer: ``s3`` (default) or ``cloudfront`` (``IMAGE_URL_SIGNER``).
        cloudfront_domain: the distribution's domain name URLs point at in ``cloudfront``
            mode (``CLOUDFRONT_DOMAIN``, e.g. ``d111111abcdef8.cloudfront.net``).
        cloudfront_key_pair_id: id of the CloudFront public key the URLs are signed for
            (``CLOUDFRONT_KEY_PAIR_ID``).
        cloudfront_private_key_parameter: name of the SSM SecureString parameter holding
            the matching RSA private key, PEM (``CLOUDFRONT_PRIVATE_KEY_PARAMETER``).
        cloudfront_private_key_file: a PEM file with that key instead, for local runs and
            tests (``CLOUDFRONT_PRIVATE_KEY_FILE``); the parameter wins when both are set.
        s3_public_endpoint_url: endpoint presigned URLs are signed for, when clients
            reach S3 at another address than the service does
            (``S3_PUBLIC_ENDPOINT_URL``; unset means the service's own endpoint).
        auth_mode: where the caller's identity comes from (``AUTH_MODE``: ``none``, the
            default, reads ``X-User-Id``; ``jwt`` the Chalice authorizer's principal;
            ``cognito`` the Cognito authorizer's ``sub`` claim; never a header then).
            The token rules of ``jwt`` are read by the authorizer itself
            (:meth:`JwtSettings.from_env`).
        s3_path_style: address buckets as ``endpoint/bucket/key`` instead of
            ``bucket.endpoint/key``; true when any S3 endpoint is overridden (emulators:
            ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``S3_PUBLIC_ENDPOINT_URL``),
            virtual-hosted style on AWS.
        feed_shards: shards of each month of the feed on GSI2 (``FEED_SHARDS``, 1-64,
            default :data:`DEFAULT_FEED_SHARDS`); may grow, never shrink (see
            ``chalicelib/keys.py``).
        tag_shards: shards of each tag and tag-pair partition (``TAG_SHARDS``, 1-64,
            default :data:`DEFAULT_TAG_SHARDS`); may grow, never shrink.
    """

    bucket_name: str
    table_name: str
    token_secret: str
    max_image_bytes: int = 50 * MIB
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_image_pixels: int = 50_000_000
    max_decode_bytes: int = 256 * MIB
    max_decoded_pixels: int = 1_000_000_000
    max_animation_frames: int = 300
    rendition_sizes: tuple[int, ...] = (320, 640, 1080)
    upload_expires_seconds: int = 3600
    upload_lease_seconds: int = 180
    cors_allow_origins: tuple[str, ...] = ()
    sweep_grace_seconds: int = 3600
    url_expires_seconds: int = 900
    url_cache_window_seconds: int = 3600
    image_url_signer: UrlSignerKind = "s3"
    cloudfront_domain: str | None = None
    cloudfront_key_pair_id: str | None = None
    cloudfront_private_key_parameter: str | None = None
    cloudfront_private_key_file: str | None = None
    s3_public_endpoint_url: str | None = None
    auth_mode: AuthMode = "none"
    s3_path_style: bool = False
    feed_shards: int = DEFAULT_FEED_SHARDS
    tag_shards: int = DEFAULT_TAG_SHARDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigurationError: a required variable is unset, a number is malformed,
                ``AUTH_MODE`` or ``IMAGE_URL_SIGNER`` is unknown, ``cloudfront`` lacks its
                domain, key pair id or key, or an ``s3`` URL would outlive 7 days.
        """
        env = os.environ if environ is None else environ
        public_endpoint = env.get("S3_PUBLIC_ENDPOINT_URL") or None
        endpoint_overridden = any(
            env.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
        )
        settings = cls(
            bucket_name=_required(env, "BUCKET_NAME"),
            table_name=_required(env, "TABLE_NAME"),
            token_secret=_secret(env, "TOKEN_SECRET"),
            max_image_bytes=_positive_int(env, "MAX_IMAGE_BYTES", 50 * MIB),
            max_image_pixels=_positive_int(env, "MAX_IMAGE_PIXELS", 50_000_000),
            max_decode_bytes=_positive_int(env, "MAX_DECODE_BYTES", 256 * MIB),
            max_decoded_pixels=_positive_int(env, "MAX_DECODED_PIXELS", 1_000_000_000),
            max_animation_frames=_positive_int(env, "MAX_ANIMATION_FRAMES", 300),
            rendition_sizes=_sizes(env, "RENDITION_SIZES", (320, 640, 1080)),
            upload_expires_seconds=_positive_int(env, "UPLOAD_EXPIRES_SECONDS", 3600),
            upload_lease_seconds=_positive_int(env, "UPLOAD_LEASE_SECONDS", 180),
            cors_allow_origins=cors_allow_origins(env),
            sweep_grace_seconds=_positive_int(env, "SWEEP_GRACE_SECONDS", 3600),
            url_expires_seconds=_positive_int(env, "URL_EXPIRES_SECONDS", 900),
            url_cache_window_seconds=_positive_int(env, "URL_CACHE_WINDOW_SECONDS", 3600),
            image_url_signer=_url_signer(env),
            cloudfront_domain=env.get("CLOUDFRONT_DOMAIN", "").strip() or None,
            cloudfront_key_pair_id=env.get("CLOUDFRONT_KEY_PAIR_ID", "").strip() or None,
            cloudfront_private_key_parameter=(
                env.get("CLOUDFRONT_PRIVATE_KEY_PARAMETER", "").strip() or None
            ),
            cloudfront_private_key_file=env.get("CLOUDFRONT_PRIVATE_KEY_FILE", "").strip() or None,
            s3_public_endpoint_url=public_endpoint,
            auth_mode=auth_mode(env),
            s3_path_style=endpoint_overridden or public_endpoint is not None,
            feed_shards=_shards(env, "FEED_SHARDS", DEFAULT_FEED_SHARDS),
            tag_shards=_shards(env, "TAG_SHARDS", DEFAULT_TAG_SHARDS),
        )
        settings.check_url_signing()
        return settings

    def check_url_signing(self) -> None:
        """Refuse a URL-signing configuration that cannot work.

        Raises:
            ConfigurationError: ``cloudfront`` without ``CLOUDFRONT_DOMAIN``,
                ``CLOUDFRONT_KEY_PAIR_ID`` or a key (parameter or file); ``s3`` with a
                window plus the longest expiry beyond S3's 7 days.
        """
        if self.image_url_signer == "cloudfront":
            missing = [
                name
                for name, value in (
                    ("CLOUDFRONT_DOMAIN", self.cloudfront_domain),
                    ("CLOUDFRONT_KEY_PAIR_ID", self.cloudfront_key_pair_id),
                    (
                        "CLOUDFRONT_PRIVATE_KEY_PARAMETER or CLOUDFRONT_PRIVATE_KEY_FILE",
                        self.cloudfront_private_key_parameter or self.cloudfront_private_key_file,
                    ),
                )
                if not value
            ]
            if missing:
                raise ConfigurationError(f"IMAGE_URL_SIGNER=cloudfront needs {', '.join(missing)}")
            return
        longest = self.url_cache_window_seconds + max(self.url_expires_seconds, MAX_URL_EXPIRES)
        if longest > S3_PRESIGN_LIMIT_SECONDS:
            raise ConfigurationError(
                "URL_CACHE_WINDOW_SECONDS plus URL_EXPIRES_SECONDS (or a view's 3600 s) must "
                f"be at most {S3_PRESIGN_LIMIT_SECONDS} s (7 days) with IMAGE_URL_SIGNER=s3, "
                f"got {longest}"
            )

    @property
    def layout(self) -> ShardLayout:
        """The shard counts new images are written with and listings read."""
        return ShardLayout(feed=self.feed_shards, tag=self.tag_shards)


def _url_signer(env: Mapping[str, str]) -> UrlSignerKind:
    value = env.get("IMAGE_URL_SIGNER", "").strip().lower() or "s3"
    if value == "s3":
        return "s3"
    if value == "cloudfront":
        return "cloudfront"
    raise ConfigurationError(
        f"IMAGE_URL_SIGNER must be one of {', '.join(URL_SIGNERS)}, "
        f"got {env.get('IMAGE_URL_SIGNER')!r}"
    )


def _shards(env: Mapping[str, str], name: str, default: int) -> int:
    count = _positive_int(env, name, default)
    if count > MAX_SHARDS:
        raise ConfigurationError(f"{name} must be at most {MAX_SHARDS}, got {count}")
    return count


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _secret(env: Mapping[str, str], name: str) -> str:
    secret = _required(env, name)
    if len(secret.encode()) < MIN_TOKEN_SECRET_BYTES:
        raise ConfigurationError(
            f"{name} must be at least {MIN_TOKEN_SECRET_BYTES} bytes (HS256 key)"
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


def _sizes(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A comma-separated list of positive pixel sizes, de-duplicated and ascending."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    sizes: set[int] = set()
    for part in raw.split(","):
        try:
            size = int(part.strip())
        except ValueError:
            raise ConfigurationError(
                f"{name} must be comma-separated integers, got {raw!r}"
            ) from None
        if size <= 0:
            raise ConfigurationError(f"{name} sizes must be positive, got {size}")
        sizes.add(size)
    return tuple(sorted(sizes))


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of origins (``https://app.example.com`` or ``*``)."""
    origins = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigurationError(f"{name}: {origin!r} is not an origin (scheme://host[:port])")
    return origins
