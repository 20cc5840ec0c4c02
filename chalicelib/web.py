"""The web gallery served at ``GET /``: its static assets and the page's headers.

The assets are plain files under ``chalicelib/web/`` (HTML, CSS, ES-module JavaScript,
an SVG icon), so ``chalice package`` ships them inside the Lambda's ``chalicelib`` and
the deployed API serves the same page as ``chalice local``. They are read once per
process (:func:`load_assets`); there is no build step.

Every asset URL carries its content's hash (``assets/app.js?v=3f2a…``): the page's
references are versioned when it is rendered, and a module's ``import … from "./x.js"``
when the assets are loaded (:func:`load_assets`). A request whose ``v`` is the asset's
current version is answered with a one-year ``immutable`` cache, so a reload fetches
nothing; any other request (an old or no version) with ``no-cache`` and an ``ETag``.

The page is rendered per request only to fill in two values, HTML-escaped:

- ``base_href``: the path the page is served under (``/`` locally, ``/api/`` behind an
  API Gateway stage), so every relative URL the page uses (``assets/app.js``,
  ``images?...``) reaches this API;
- ``auth_mode``: ``none`` (the page asks whom to act as and sends ``X-User-Id``) or
  ``jwt``/``cognito`` (it asks for a bearer token).

Content-Security-Policy (:func:`content_security_policy`): scripts and styles only from
the API itself (no inline script, no ``eval``), images and ``fetch``/XHR from the API
and from the origins the service hands out URLs for. Those are derived at run time
(:func:`bucket_origins`): a throwaway image URL and a presigned POST are signed, which is
local computation, and their ``scheme://host[:port]`` kept. That is the CloudFront
domain or ``https://{bucket}.s3.{region}.amazonaws.com`` on AWS, LocalStack's or moto's
``http://127.0.0.1:PORT`` locally, ``S3_PUBLIC_ENDPOINT_URL`` when set, so the policy
is exactly as wide as the URLs the API hands out, never ``https:`` or ``*``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from chalicelib.urls import ObjectUrls

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

#: An asset requested at its current version (``?v=`` its hash): cached for a year and
#: never revalidated; a redeploy that changes it changes the page's URL for it.
VERSIONED_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: An asset requested without its current version: revalidated on every use
#: (``no-cache`` + a strong ``ETag``, a 304 when it matches).
ASSET_CACHE_CONTROL = "no-cache"
#: A relative module import of a sibling asset: ``from "./name.js"``.
_IMPORT = re.compile(r"""(from\s+["'])\./([^"'?]+)(["'])""")
#: A reference to an asset in the page: ``"assets/name"``.
_PAGE_REFERENCE = re.compile(r'"assets/([^"?]+)"')
#: The page carries per-request values and is never cached.
PAGE_CACHE_CONTROL = "no-store"


@dataclass(frozen=True)
class Asset:
    """One static file of the page.

    Attributes:
        name: file name, as in ``/assets/{name}``.
        body: its text (every asset is UTF-8 text), with versioned module imports.
        content_type: the ``Content-Type`` to serve it with.
        etag: strong validator, the quoted SHA-256 of ``body`` (first 32 hex digits).
    """

    name: str
    body: str
    content_type: str
    etag: str

    @property
    def version(self) -> str:
        """The ``v`` its URLs carry: the ETag's first 16 hex digits."""
        return self.etag.strip('"')[:16]

    @property
    def url(self) -> str:
        """Its versioned, relative URL: ``assets/{name}?v={version}``."""
        return f"assets/{self.name}?v={self.version}"


class PostSigner(Protocol):
    """What :func:`bucket_origins` needs of ``chalicelib.storage.ImageStorage``."""

    def presigned_post(
        self, key: str, min_bytes: int, max_bytes: int, expires_in: int
    ) -> dict[str, Any]: ...


@functools.cache
def load_assets(directory: Path = WEB_DIR) -> Mapping[str, Asset]:
    """Every servable file directly in ``directory``, read once per process.

    A module's ``from "./x.js"`` becomes ``from "./x.js?v={version}"``, so a changed
    import changes its importer's version too. Files are versioned after what they import
    (at most one pass per file; an import cycle or a missing file is left unversioned).

    Returns:
        ``name -> Asset`` for each file whose extension is in :data:`CONTENT_TYPES`.
    """
    texts: dict[str, tuple[str, str]] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            texts[path.name] = (path.read_bytes().decode("utf-8"), content_type)
    assets: dict[str, Asset] = {}
    for _ in range(len(texts) + 1):
        for name, (text, content_type) in texts.items():
            imports = {match[2] for match in _IMPORT.finditer(text)} & texts.keys()
            if name in assets or not imports <= assets.keys():
                continue
            body = _IMPORT.sub(
                lambda m: (
                    f"{m[1]}./{m[2]}?v={assets[m[2]].version}{m[3]}" if m[2] in assets else m[0]
                ),
                text,
            )
            assets[name] = _asset(name, body, content_type)
    for name, (text, content_type) in texts.items():
        assets.setdefault(name, _asset(name, text, content_type))
    return {name: assets[name] for name in texts}


def _asset(name: str, body: str, content_type: str) -> Asset:
    etag = f'"{hashlib.sha256(body.encode()).hexdigest()[:32]}"'
    return Asset(name=name, body=body, content_type=content_type, etag=etag)


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
    """``index.html`` with ``{{base_href}}`` and ``{{auth_mode}}`` filled in, escaped, and
    every ``"assets/{name}"`` of an existing asset versioned (:attr:`Asset.url`)."""
    assets = load_assets()
    template = _PAGE_REFERENCE.sub(
        lambda m: f'"{assets[m[1]].url}"' if m[1] in assets else m[0],
        assets[PAGE_NAME].body,
    )
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


def bucket_origins(urls: ObjectUrls, uploads: PostSigner) -> tuple[str, ...]:
    """The origins of the URLs the service hands out: images (``urls``: S3 or CloudFront)
    and direct uploads' presigned POSTs (``uploads``: the bucket), once each.

    Signs both for a key that need not exist (signing makes no request) and keeps their
    origins.
    """
    probes = (
        urls.url("csp-probe", datetime.now(UTC), 60),
        str(uploads.presigned_post("csp-probe", 1, 1, 60)["url"]),
    )
    origins = (origin_of(probe) for probe in probes)
    return tuple(dict.fromkeys(origin for origin in origins if origin))


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


def asset_headers(found: Asset, version: str | None = None) -> dict[str, str]:
    """Response headers of ``GET /assets/{name}`` (200 or 304); ``version`` is the
    request's ``v``: the current one gets :data:`VERSIONED_ASSET_CACHE_CONTROL`."""
    versioned = version == found.version
    return {
        "Content-Type": found.content_type,
        "Cache-Control": VERSIONED_ASSET_CACHE_CONTROL if versioned else ASSET_CACHE_CONTROL,
        "ETag": found.etag,
        "X-Content-Type-Options": "nosniff",
    }
