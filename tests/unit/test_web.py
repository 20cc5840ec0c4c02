"""The web gallery's routes (``GET /``, ``GET /assets/{name}``) and ``chalicelib.web``."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from chalice.test import Client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import app as app_module
from chalicelib import web
from chalicelib.service import ImageService
from chalicelib.storage import ImageStorage
from chalicelib.urls import CloudFrontUrlSigner, S3UrlSigner
from tests.unit.conftest import BUCKET, SETTINGS


class PageParser(HTMLParser):
    """Collects the tags and attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_page_is_html_with_a_csp_that_forbids_inline_script(client: Client) -> None:
    response = client.http.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    bucket_origin = f"https://{BUCKET}.s3.amazonaws.com"  # what the presigner signs for
    assert bucket_origin in csp["img-src"]
    assert bucket_origin in csp["connect-src"]
    assert not any(
        "unsafe" in value or value in ("*", "https:", "http:") for v in csp.values() for value in v
    )


def test_page_has_no_inline_script_handlers_or_styles(client: Client) -> None:
    page = parse(client.http.get("/").body.decode())
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert all(attrs.get("type") == "module" for attrs in scripts)
    assert page.script_text == ""
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), tag
        assert "style" not in attrs, tag


def test_page_tells_the_script_the_auth_mode_and_its_base(client: Client) -> None:
    page = parse(client.http.get("/").body.decode())
    (body,) = [attrs for tag, attrs in page.tags if tag == "body"]
    assert body["data-auth-mode"] == "none"
    (base,) = [attrs for tag, attrs in page.tags if tag == "base"]
    assert base["href"] == "/"


def test_page_in_jwt_mode_asks_for_a_token(service: ImageService) -> None:
    settings = dataclasses.replace(SETTINGS, auth_mode="jwt")
    app_module.use_service(ImageService(service.storage, service.metadata, settings))
    try:
        with Client(app_module.app) as client:
            response = client.http.get("/")
    finally:
        app_module.use_service(None)
    assert response.status_code == 200  # the page itself needs no token
    assert 'data-auth-mode="jwt"' in response.body.decode()


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"path": "/", "resourcePath": "/"}, "/"),
        ({"path": "/api/", "resourcePath": "/"}, "/api/"),
        ({"path": "/api", "resourcePath": "/"}, "/api/"),
        ({}, "/"),
        (None, "/"),
        ({"path": "//evil.example/"}, "/"),
        ({"path": "javascript:alert(1)"}, "/"),
    ],
)
def test_base_href_follows_the_stage_prefix(context: dict[str, Any] | None, expected: str) -> None:
    assert web.base_href(context) == expected


def test_rendered_values_are_escaped() -> None:
    page = web.render_page('x" onload="alert(1)', '/a"b/')
    assert 'data-auth-mode="x&quot; onload=&quot;alert(1)"' in page
    assert 'href="/a&quot;b/"' in page


def test_csp_names_the_public_endpoint_presigned_urls_point_at(aws: None) -> None:
    s3 = boto3.client("s3")
    presigner = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:4566",
        config=Config(s3={"addressing_style": "path"}),
    )
    storage = ImageStorage(s3, BUCKET, presigner)
    urls = S3UrlSigner(presigner, BUCKET, 3600, boto3.session.Session().get_credentials())
    origins = web.bucket_origins(urls, storage)
    assert origins == ("http://127.0.0.1:4566",)
    csp = directives(web.content_security_policy(origins))
    assert csp["img-src"][:2] == ["'self'", "http://127.0.0.1:4566"]
    assert csp["connect-src"] == ["'self'", "http://127.0.0.1:4566"]


def test_csp_names_the_cloudfront_domain_for_images_and_the_bucket_for_uploads(
    aws: None,
) -> None:
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    urls = CloudFrontUrlSigner("d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", lambda: pem, 3600)
    origins = web.bucket_origins(urls, ImageStorage(s3, BUCKET))
    assert origins == ("https://d111111abcdef8.cloudfront.net", "https://s3.amazonaws.com")


def test_assets_at_their_current_version_are_cached_for_a_year(client: Client) -> None:
    page = client.http.get("/").body.decode()
    for name in ("app.js", "blurhash.js", "style.css", "favicon.svg"):
        found = web.load_assets()[name]
        assert len(found.version) == 16 and found.etag.startswith(f'"{found.version}')
        response = client.http.get(f"/{found.url}")
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.body == found.body.encode()
        stale = client.http.get(f"/assets/{name}?v=0123456789abcdef")
        assert stale.headers["Cache-Control"] == "no-cache"
        if name != "blurhash.js":
            assert f'"{found.url}"' in page  # the page asks for the current version
    # The module import is versioned too, so a changed blurhash.js changes app.js's URL.
    blurhash = web.load_assets()["blurhash.js"]
    assert f'from "./blurhash.js?v={blurhash.version}"' in web.load_assets()["app.js"].body


def test_a_changed_import_changes_its_importers_version(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text('import { b } from "./b.js";\n')
    (tmp_path / "b.js").write_text("export const b = 1;\n")
    first = web.load_assets(tmp_path)
    (tmp_path / "b.js").write_text("export const b = 2;\n")
    second = web.load_assets.__wrapped__(tmp_path)
    assert first["a.js"].version != second["a.js"].version
    assert second["a.js"].body == f'import {{ b }} from "./b.js?v={second["b.js"].version}";\n'


def test_origin_of() -> None:
    assert web.origin_of("https://b.s3.amazonaws.com/k?X-Amz=1") == "https://b.s3.amazonaws.com"
    assert web.origin_of("http://127.0.0.1:5000/b/k") == "http://127.0.0.1:5000"
    assert web.origin_of("http://[::1]:5000/b/k") == "http://[::1]:5000"
    assert web.origin_of("/relative") is None
    assert web.origin_of("ftp://host/x") is None


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("blurhash.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("LICENSE-blurhash.txt", "text/plain; charset=utf-8"),
    ],
)
def test_assets_are_served_with_their_type_and_a_validator(
    client: Client, name: str, content_type: str
) -> None:
    response = client.http.get(f"/assets/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.body == web.load_assets()[name].body.encode()
    etag = response.headers["ETag"]
    again = client.http.get(f"/assets/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.body == b""
    other = client.http.get(f"/assets/{name}", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200


@pytest.mark.parametrize("name", ["index.html", "nope.js", "..%2Fapp.py", "web.py"])
def test_unknown_assets_are_404(client: Client, name: str) -> None:
    response = client.http.get(f"/assets/{name}")
    assert response.status_code == 404
    assert response.json_body["Code"] == "NotFoundError"


def test_everything_the_page_loads_is_an_asset_of_the_app(client: Client) -> None:
    page = parse(client.http.get("/").body.decode())
    referenced = [
        attrs.get("src") or attrs.get("href")
        for tag, attrs in page.tags
        if tag in ("script", "link", "img") and (attrs.get("src") or attrs.get("href"))
    ]
    assert referenced
    for url in referenced:
        assert url and url.startswith("assets/"), url  # relative: works under /api/ too
        assert client.http.get(f"/{url}").status_code == 200
    for name, found in web.load_assets().items():
        if name.endswith(".js"):
            for imported in re.findall(r"""from\s+["']\./([^"'?]+)\?v=""", found.body):
                assert imported in web.load_assets(), (name, imported)


def test_scripts_never_write_html() -> None:
    """User text reaches the page only through textContent and attributes."""
    for name, found in web.load_assets().items():
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in found.body, (name, sink)
            assert "http://" not in found.body.replace("http://www.w3.org", "")
