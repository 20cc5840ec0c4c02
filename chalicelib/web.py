"""The web gallery served at ``GET /``: its static assets and the page's headers.

The assets are plain files under ``chalicelib/web/`` (HTML, CSS, ES-module JavaScript,
an SVG icon), so ``chalice package`` ships them inside the Lambda's ``chalicelib`` and
the deployed API serves the same page as ``chalice local``. They are read once per
process (:func:`load_assets`); there is no build step.

The page is rendered per request only to fill in two values, HTML-escaped:

- ``base_href``: the path the page is served under (``/`` locally, ``/api/`` behind an
  API Gateway stage), so every relative URL the page uses (``assets/app.js``,
  ``images?...``) reaches this API;
- ``auth_mode``: ``none`` (the page asks whom to act as and sends ``X-User-Id``) or
  ``jwt``/``cognito`` (it asks for a bearer token).

Content-Security-Policy (:func:`content_security_policy`): scripts and styles only from
the API itself (no inline script, no ``eval``), images and ``fetch``/XHR from the API
and from the bucket's origin. The bucket's origin is derived at run time from the
presigner the service signs URLs with (:func:`bucket_origins`): it signs a throwaway
URL, which is local computation, and keeps its ``scheme://host[:port]``. That is
``https://{bucket}.s3.{region}.amazonaws.com`` on AWS, LocalStack's or moto's
``http://127.0.0.1:PORT`` locally, ``S3_PUBLIC_ENDPOINT_URL`` when set, so the policy
is exactly as wide as the URLs the API hands out, never ``https:`` or ``*``.
"""

from __future__ import annotations

import functools
import hashlib
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE_NAME = "index.html"

#: Content-Type of each asset by file extension; a file of any other kind is not served.
CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

#: Assets are revalidated on every use (``no-cache`` + a strong ``ETag``, a 304 when it
#: matches): their URLs carry no content hash, so a redeploy is seen at once, and an
#: unchanged file costs one round trip with no body.
ASSET_CACHE_CONTROL = "no-cache"
#: The page carries per-request values and is never cached.
PAGE_CACHE_CONTROL = "no-store"


@dataclass(frozen=True)
class Asset:
    """One static file of the page.

    Attributes:
        name: file name, as in ``/assets/{name}``.
        body: its text (every asset is UTF-8 text).
        content_type: the ``Content-Type`` to serve it with.
        etag: strong validator, the quoted SHA-256 of the bytes (first 32 hex digits).
    """

    name: str
    body: str
    content_type: str
    etag: str


class UrlSigner(Protocol):
    """What :func:`bucket_origins` needs of ``chalicelib.storage.ImageStorage``."""

    def presigned_get_url(
        self, key: str, expires_in: int, download_filename: str | None = None
    ) -> str: ...


@functools.cache
def load_assets(directory: Path = WEB_DIR) -> Mapping[str, Asset]:
    """Every servable file directly in ``directory``, read once per process.

    Returns:
        ``name -> Asset`` for each file whose extension is in :data:`CONTENT_TYPES`.
    """
    assets: dict[str, Asset] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        data = path.read_bytes()
        assets[path.name] = Asset(
            name=path.name,
            body=data.decode("utf-8"),
            content_type=content_type,
            etag=f'"{hashlib.sha256(data).hexdigest()[:32]}"',
        )
    return assets


def asset(name: str) -> Asset | None:
    """The asset served at ``/assets/{name}``, or None (the page itself is not one)."""
    if name == PAGE_NAME:
        return None
    return load_assets().get(name)


def not_modified(found: Asset, if_none_match: str | None) -> bool:
    """Whether a request's ``If-None-Match`` already names ``found``'s ETag (a 304)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or found.etag in tags


def base_href(context: Mapping[str, Any] | None) -> str:
    """The path ``GET /`` was requested at, ending in ``/``: what relative URLs resolve
    against. ``/`` under ``chalice local``, ``/api/`` behind API Gateway's ``api`` stage
    (its ``requestContext.path`` carries the stage, ``resourcePath`` is ``/``)."""
    path = str((context or {}).get("path") or "/")
    if not path.startswith("/") or "//" in path:
        return "/"
    return path if path.endswith("/") else f"{path}/"


def render_page(auth_mode: str, href: str) -> str:
    """``index.html`` with ``{{base_href}}`` and ``{{auth_mode}}`` filled in, escaped."""
    template = load_assets()[PAGE_NAME].body
    return template.replace("{{base_href}}", html.escape(href, quote=True)).replace(
        "{{auth_mode}}", html.escape(auth_mode, quote=True)
    )


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def bucket_origins(storage: UrlSigner) -> tuple[str, ...]:
    """The origin(s) of the URLs the service hands out for the bucket.

    Signs a GET URL for a key that need not exist (presigning makes no request) and
    keeps its origin; a presigned POST goes to the same host.
    """
    origin = origin_of(storage.presigned_get_url("csp-probe", 60))
    return (origin,) if origin else ()


def content_security_policy(extra_origins: Iterable[str] = ()) -> str:
    """The page's ``Content-Security-Policy``.

    Args:
        extra_origins: origins besides the API's own that images are loaded from and
            uploads posted to (the bucket's, :func:`bucket_origins`).

    Returns:
        A policy with ``default-src 'none'``; scripts, styles, fonts and the icon from
        ``'self'`` only (no inline script or ``eval``); ``img-src`` and ``connect-src``
        from ``'self'`` and ``extra_origins``; no framing, no ``<base>`` elsewhere, forms
        posted nowhere but here.
    """
    origins = " ".join(dict.fromkeys(origin for origin in extra_origins if origin))
    with_origins = f"'self' {origins}".strip()
    directives = [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {with_origins}",
        f"connect-src {with_origins}",
        "manifest-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def page_headers(csp: str) -> dict[str, str]:
    """Response headers of ``GET /``: type, CSP, no caching, no sniffing, no referrer
    leaking presigned URLs."""
    return {
        "Content-Type": CONTENT_TYPES[".html"],
        "Content-Security-Policy": csp,
        "Cache-Control": PAGE_CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def asset_headers(found: Asset) -> dict[str, str]:
    """Response headers of ``GET /assets/{name}`` (200 or 304)."""
    return {
        "Content-Type": found.content_type,
        "Cache-Control": ASSET_CACHE_CONTROL,
        "ETag": found.etag,
        "X-Content-Type-Options": "nosniff",
    }
