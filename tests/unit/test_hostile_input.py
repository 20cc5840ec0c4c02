"""The hostile surface of the API in one place (issue 5, "Hostile input").

Two tables, through the HTTP layer (Chalice's test client over moto):

- ``REFUSED``: requests an attacker or a broken client sends. Each must be answered with
  its 4xx, Chalice's error shape ``{"Code", "Message"}``, and a Message that names the
  problem; and the bucket's object count and the table's item count must not change.
- ``NEUTRALISED_FILENAMES``: filenames that are not refused but made harmless: path
  traversal, CR/LF and quotes (header injection into ``Content-Disposition``). Each is
  stored sanitised, and the ``Content-Disposition`` that S3 (moto) answers on the view's
  ``download=true`` URL and on ``/download`` is one header naming the sanitised file.

``tests/unit/test_validation_rules.py`` has one test per validation rule in both request
forms; this module is the attacker's view of the same surface. Issue 9 added input that
costs too much (80,000 tags in every form), parsers' exceptions (JSON nested 1,000 deep,
a 257-character multipart boundary), prefix-matching patterns (``"alice\n"``), and the
request limit; ``tests/unit/test_input_cost.py`` shows those refusals do bounded work.

Speed: one moto bucket and table for the module, holding two images of alice's (so there
is something to delete, and a ``next_token`` to tamper with); a refused request changes
nothing, and the counts are compared before and after each request.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3
import jwt
import pytest
import requests
from chalice.test import Client
from moto import mock_aws
from urllib3 import encode_multipart_formdata

import app as app_module
from chalicelib.service import AwsClients, ImageService
from tests.unit.conftest import (
    BUCKET,
    SETTINGS,
    START,
    TABLE,
    FixedClock,
    build_service,
    create_resources,
    image_bytes,
    upload,
    use_fake_aws_environment,
)
from tests.unit.test_validation_rules import blank_png, noisy_jpeg

MAX_BYTES = SETTINGS.max_image_bytes

# --- one store for the module -----------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """The module's API client, its AWS clients, and what is already stored."""

    client: Client
    service: ImageService
    s3: Any
    ddb: Any
    image_id: str  # one of alice's two images
    next_token: str  # of GET /images?user_id=alice&limit=1

    def counts(self) -> tuple[int, int]:
        """(objects in the bucket, items in the table); the Scan is the test's, not the app's."""
        objects = self.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"]
        items = self.ddb.scan(TableName=TABLE, Select="COUNT")["Count"]
        return objects, items


@pytest.fixture(scope="module")
def module_store() -> Iterator[Store]:
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws_environment(env)
        with mock_aws():
            clients = AwsClients.from_settings(SETTINGS)
            create_resources(clients)
            service = build_service(clients, FixedClock(START))
            app_module.use_service(service)
            with Client(app_module.app) as client:
                first = upload(client, "alice", tags=["cat"])
                upload(client, "alice", tags=["cat"])
                page = client.http.get("/images?user_id=alice&limit=1").json_body
                yield Store(
                    client,
                    service,
                    boto3.client("s3"),
                    boto3.client("dynamodb"),
                    first["image_id"],
                    page["next_token"],
                )
            app_module.use_service(None)


@pytest.fixture
def store(module_store: Store) -> Store:
    """The module's store, with its service installed (other modules install their own)."""
    app_module.use_service(module_store.service)
    return module_store


# --- request builders -------------------------------------------------------------------

Request = Callable[[Store], Any]


def multipart(data: bytes, filename: str = "photo.jpg", declared: str = "image/jpeg") -> Request:
    """POST /images as multipart/form-data: this file, owner alice."""
    return multipart_fields(("file", (filename, data, declared)), ("user_id", "alice"))


def multipart_fields(*fields: tuple[str, Any]) -> Request:
    def send(store: Store) -> Any:
        body, content_type = encode_multipart_formdata(list(fields))
        return store.client.http.post("/images", headers={"Content-Type": content_type}, body=body)

    return send


def with_tags(tags: str) -> Request:
    return multipart_fields(
        ("file", ("photo.png", image_bytes(), "image/png")), ("user_id", "alice"), ("tags", tags)
    )


def json_upload(**document: Any) -> Request:
    def send(store: Store) -> Any:
        body = json.dumps({"user_id": "alice", "filename": "photo.png", **document})
        return store.client.http.post(
            "/images", headers={"Content-Type": "application/json"}, body=body
        )

    return send


def raw_post(body: bytes, content_type: str) -> Request:
    def send(store: Store) -> Any:
        return store.client.http.post("/images", headers={"Content-Type": content_type}, body=body)

    return send


def get(template: str) -> Request:
    """GET a URL; ``{image_id}``, ``{tampered_token}``, ``{foreign_token}`` are filled in."""

    def send(store: Store) -> Any:
        url = template.format(
            image_id=store.image_id,
            tampered_token=tampered(store.next_token),
            foreign_token=foreign(store.next_token),
        )
        return store.client.http.get(url)

    return send


def delete(template: str, caller: str) -> Request:
    def send(store: Store) -> Any:
        url = template.format(image_id=store.image_id)
        return store.client.http.delete(url, headers={"X-User-Id": caller})

    return send


def delete_with_body(body: str) -> Request:
    """DELETE alice's image with a JSON body and no ``X-User-Id`` (the body names the caller)."""

    def send(store: Store) -> Any:
        return store.client.http.delete(
            f"/images/{store.image_id}", headers={"Content-Type": "application/json"}, body=body
        )

    return send


def raw_form(*parts: tuple[str, bytes], boundary: str = "b0undary") -> Request:
    """POST /images as multipart written by hand: ``(part header lines, data)`` pairs, a
    PNG as ``file`` first."""
    png = ('Content-Disposition: form-data; name="file"; filename="a.png"', image_bytes())
    chunks = [
        f"--{boundary}\r\n{header}\r\n\r\n".encode() + data + b"\r\n"
        for header, data in (png, *parts)
    ]
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return raw_post(body, f"multipart/form-data; boundary={boundary}")


def field(name: str, value: str | bytes) -> tuple[str, bytes]:
    """A form field for :func:`raw_form`."""
    data = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"', data


def short_field(name: str, value: str) -> tuple[str, bytes]:
    """A form field as short as it can be written (80,000 of them fit MAX_REQUEST_BYTES)."""
    return f"Content-Disposition:form-data;name={name}", value.encode()


# --- hostile data -----------------------------------------------------------------------


def tampered(token: str) -> str:
    """The token with its claims edited (one more claim) and its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = json.dumps({**claims, "admin": True}).encode()
    return ".".join([header, base64.urlsafe_b64encode(edited).decode().rstrip("="), signature])


def foreign(token: str) -> str:
    """The same claims, validly signed, but with another service's secret."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, "another service's secret, 32+ bytes", algorithm="HS256")


def truncated_jpeg() -> bytes:
    data = noisy_jpeg()
    return data[: len(data) * 2 // 3]


HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script></svg>"
)
#: A part header without its colon, then no closing boundary.
MALFORMED_MULTIPART = (
    b"--b0undary\r\nContent-Disposition form-data; name=file\r\n\r\n\x89PNG\r\n--b0undary"
)
#: A whole, valid form whose body stops before its closing boundary (a cut upload).
UNTERMINATED_MULTIPART = (
    b'--b0undary\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nalice\r\n'
    b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + image_bytes()
)


#: 80,000 distinct tags, the issue's example of a body that took 27 s of CPU.
MANY_TAGS = [f"t{i}" for i in range(80_000)]
#: JSON nested 1,000 deep (2 KB): a RecursionError in Python's parser.
DEEP_JSON = "[" * 1000 + "]" * 1000
PNG_BASE64 = base64.b64encode(image_bytes()).decode()


def padded_png(total: int) -> bytes:
    """A valid PNG followed by padding up to ``total`` bytes."""
    data = image_bytes("PNG")
    return data + b"\0" * (total - len(data))


# --- refused: 4xx, the problem named, nothing written -----------------------------------

#: The Code each status is reported with; 415 also comes from Chalice's own routing.
CODES = {
    400: {"BadRequestError"},
    403: {"ForbiddenError"},
    404: {"NotFoundError"},
    413: {"RequestEntityTooLargeError"},
    415: {"UnsupportedMediaTypeError", "UnsupportedMediaType"},
}
UNKNOWN_ID = str(uuid.uuid4())

REFUSED: list[Any] = [
    # (id, request, status, the Message contains)
    ("malformed-multipart", raw_post(MALFORMED_MULTIPART, "multipart/form-data; boundary=b0undary"),
     400, "body: malformed multipart/form-data"),
    ("broken-base64", json_upload(image_base64="iVBORw0KGgo=AAAA!!"),
     400, "image_base64: is not valid base64"),
    ("truncated-jpeg", multipart(truncated_jpeg()),
     415, "file: not a decodable image"),
    ("html-named-jpg", multipart(HTML, filename="cat.jpg", declared="image/jpeg"),
     415, "file: not a decodable image"),
    ("svg", multipart(SVG, filename="logo.svg", declared="image/svg+xml"),
     415, "file: not a decodable image"),
    ("decompression-bomb", multipart(blank_png(5000, 5000), "bomb.png", "image/png"),  # 3 KB
     413, "file: the image is 5000x5000 pixels, the limit is 4000000 pixels"),
    ("zero-bytes", multipart(b"", "empty.jpg"),
     400, "file: the image is empty"),
    ("max-image-bytes-plus-1", multipart(padded_png(MAX_BYTES + 1), "big.png", "image/png"),
     413, f"file: the image is {MAX_BYTES + 1} bytes, the limit is {MAX_BYTES} bytes"),
    ("user_id-with-key-separator", multipart_fields(
        ("file", ("a.png", image_bytes(), "image/png")), ("user_id", "alice#META")),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("11-tags", with_tags(",".join(f"t{i}" for i in range(11))),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("65-character-tag", with_tags("x" * 65),
     400, f"tags: tag '{'x' * 65}' must be 1-64 characters of a-z 0-9 _ -"),
    ("emoji-in-tags", with_tags("cat,\U0001f431"),
     400, "tags: tag '\U0001f431' must be 1-64 characters of a-z 0-9 _ -"),
    ("invalid-date", get("/images?date_from=2026-02-30"),
     400, "date_from: must be an ISO date (2026-11-21) or datetime"),
    ("inverted-date-range", get("/images?date_from=2026-11-22&date_to=2026-11-21"),
     400, "date_from: is after date_to"),
    ("inverted-date_range", get("/images?date_range=2026-12-01,2026-11-01"),
     400, "date_from: is after date_to"),
    ("limit-0", get("/images?limit=0"),
     400, "limit: must be an integer from 1 to 100, got 0"),
    ("limit-101", get("/images?limit=101"),
     400, "limit: must be an integer from 1 to 100, got 101"),
    ("limit-minus-1", get("/images?limit=-1"),
     400, "limit: must be an integer from 1 to 100 in ASCII digits (no sign"),
    ("limit-abc", get("/images?limit=abc"),
     400, "limit: must be an integer from 1 to 100"),
    ("tampered-next_token", get("/images?user_id=alice&limit=1&next_token={tampered_token}"),
     400, "next_token: is not a token this service issued"),
    ("foreign-next_token", get("/images?user_id=alice&limit=1&next_token={foreign_token}"),
     400, "next_token: is not a token this service issued"),
    ("unknown-image-id", get(f"/images/{UNKNOWN_ID}"),
     404, f"image_id: no image with id '{UNKNOWN_ID}'"),
    ("malformed-image-id", get("/images/IMAGE%23x"),
     404, "image_id: no image with id 'IMAGE"),
    ("malformed-image-id-download", get("/images/..%2F..%2Fetc%2Fpasswd/download"),
     404, "image_id: no image with id '..%2F..%2Fetc%2Fpasswd'"),
    ("unknown-image-id-delete", delete(f"/images/{UNKNOWN_ID}", "alice"),
     404, f"image_id: no image with id '{UNKNOWN_ID}'"),
    ("delete-by-another-user", delete("/images/{image_id}", "mallory"),
     403, "X-User-Id: only the owner may delete this image"),
    ("wrong-content-type", raw_post(image_bytes("PNG"), "image/png"),
     415, "Unsupported media type: image/png"),
    ("lone-surrogate-in-title", json_upload(
        image_base64=base64.b64encode(image_bytes()).decode(), title="\ud800"),
     400, "title: "),
    ("multipart-without-closing-boundary",
     raw_post(UNTERMINATED_MULTIPART, "multipart/form-data; boundary=b0undary"),
     400, "body: malformed multipart/form-data"),
    # --- issue 9: input that costs too much, refused at its limit ---
    ("80000-tags-json-list", json_upload(image_base64=PNG_BASE64, tags=MANY_TAGS),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("80000-tags-json-comma-separated",
     json_upload(image_base64=PNG_BASE64, tags=",".join(MANY_TAGS)),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("80000-tags-multipart-comma-separated", with_tags(",".join(MANY_TAGS)),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("80000-tags-multipart-json-array-text", with_tags(json.dumps(MANY_TAGS)),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("80000-tags-json-array-text-in-json",
     json_upload(image_base64=PNG_BASE64, tags=json.dumps(MANY_TAGS)),
     400, "tags: more than 10 tags given, at most 10 allowed"),
    ("80000-tags-multipart-repeated-fields",
     raw_form(*(short_field("tags", tag) for tag in MANY_TAGS), boundary="b"),
     400, "body: more than 128 multipart parts"),
    ("200-repeated-tags-fields",
     raw_form(*(field("tags", f"t{i}") for i in range(200)), field("user_id", "alice")),
     400, "body: more than 128 multipart parts"),
    ("101-tag-entries-of-one-tag", with_tags(",".join(["cat"] * 101)),
     400, "tags: more than 100 entries given, at most 10 tags allowed"),
    ("80000-empty-tag-entries", with_tags("," * 80_000),
     400, "tags: more than 100 entries given"),
    ("129-multipart-parts", raw_form(*(field(f"x{i}", "1") for i in range(128))),
     400, "body: more than 128 multipart parts"),
    ("80000-metadata-keys",
     json_upload(image_base64=PNG_BASE64, metadata={f"k{i}": "v" for i in range(80_000)}),
     400, "metadata: 80000 keys given, at most 20 allowed"),
    ("80000-unknown-query-parameters",
     get("/images?" + "&".join(f"p{i}=1" for i in range(80_000))),
     400, "p0: unknown query parameter"),
    # --- issue 9: parsers' exceptions are 400s naming the field ---
    ("json-body-nested-1000-deep",
     raw_post(json.dumps({"image_base64": PNG_BASE64, "user_id": "alice"})[:-1].encode()
              + b', "x": ' + DEEP_JSON.encode() + b"}", "application/json"),
     400, "body: JSON nested too deeply"),
    ("multipart-metadata-nested-1000-deep",
     raw_form(field("user_id", "alice"), field("metadata", '{"a": ' + DEEP_JSON + "}")),
     400, "metadata: JSON nested too deeply"),
    ("multipart-tags-json-array-nested-1000-deep",
     raw_form(field("user_id", "alice"), field("tags", DEEP_JSON)),
     400, "tags: JSON nested too deeply"),
    ("delete-body-nested-1000-deep", delete_with_body('{"user_id": ' + DEEP_JSON + "}"),
     400, "body: JSON nested too deeply"),
    ("multipart-boundary-257-characters",
     raw_form(field("user_id", "alice"), boundary="b" * 257),
     400, "Content-Type: the multipart boundary is 257 characters, at most 70 allowed"),
    ("multipart-boundary-71-characters",
     raw_form(field("user_id", "alice"), boundary="b" * 71),
     400, "Content-Type: the multipart boundary is 71 characters, at most 70 allowed"),
    ("tags-json-array-of-numbers", with_tags("[1, 2]"),
     400, "tags: every tag must be a string"),
    # --- issue 9: every pattern matches the whole string ---
    ("user_id-trailing-newline-json", json_upload(image_base64=PNG_BASE64, user_id="alice\n"),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("user_id-trailing-newline-multipart", raw_form(field("user_id", "alice\n")),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("user_id-trailing-newline-query", get("/images?user_id=alice%0A"),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("user_id-trailing-newline-delete-query",
     lambda store: store.client.http.delete(f"/images/{store.image_id}?user_id=alice%0A"),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("user_id-trailing-newline-delete-body", delete_with_body('{"user_id": "alice\\n"}'),
     400, "user_id: must be 1-128 characters of A-Z a-z 0-9 _ . @ -"),
    ("metadata-key-trailing-newline",
     json_upload(image_base64=PNG_BASE64, metadata={"camera\n": "X100"}),
     400, "metadata: key 'camera\\n' must be 1-64 characters"),
    ("metadata-user_id-trailing-newline",
     raw_form(field("metadata", json.dumps({"user_id": "alice\n"}))),
     400, "metadata.user_id: must be 1-128 characters"),
    # --- issue 9: the two size limits, each with its own message ---
    ("json-image_data-over-max-image-bytes",
     json_upload(image_data=base64.b64encode(padded_png(2 * MAX_BYTES)).decode()),
     413, f"image_data: the image is {2 * MAX_BYTES} bytes, the limit is {MAX_BYTES} bytes"),
    ("body-over-max-request-bytes",
     raw_form(field("user_id", "alice"), field("description", "x" * SETTINGS.max_request_bytes)),
     413, "body: the request is"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "status", "problem"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSED],
)
def test_hostile_request_is_refused_and_writes_nothing(
    store: Store, request_: Request, status: int, problem: str
) -> None:
    before = store.counts()
    response = request_(store)
    assert response.status_code == status, response.body
    body = response.json_body
    assert isinstance(body, dict) and set(body) == {"Code", "Message"}, body
    assert body["Code"] in CODES[status], body
    assert problem in body["Message"], body
    assert store.counts() == before


# --- neutralised: path traversal and header injection in filenames ----------------------

NEUTRALISED_FILENAMES = [
    # (id, request form, filename sent, filename stored)
    ("path-traversal-json", "json", "../../etc/passwd.png", "passwd.png"),
    ("path-traversal-multipart", "multipart", "../../etc/passwd.png", "passwd.png"),
    ("windows-path-traversal", "json", "..\\..\\Windows\\win.ini.png", "win.ini.png"),
    ("crlf-header-injection", "json", "a.png\r\nX-Injected: 1\r\n",
     "a.pngX-Injected: 1.png"),
    ("crlf-and-a-second-disposition", "json",
     'a.png"\r\nContent-Disposition: inline; filename="b.html',
     'a.png"Content-Disposition: inline; filename="b.html.png'),
    ("quotes-closing-the-parameter", "json", 'a"; filename="evil.png', 'a"; filename="evil.png'),
    ("escaped-quote-multipart", "multipart", 'a\\"b.png', 'a"b.png'),
    ("html-extension-on-a-png", "json", "page.html", "page.html.png"),
    ("percent-encoded-crlf-multipart", "multipart", "a%0D%0AX-Injected: 1.png",
     "a%0D%0AX-Injected: 1.png"),
]  # fmt: skip

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def upload_named(store: Store, form: str, filename: str) -> Any:
    if form == "json":
        return json_upload(
            image_base64=base64.b64encode(image_bytes()).decode(), filename=filename
        )(store)
    # The raw part header, so the filename reaches the parser exactly as written.
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + image_bytes()
        + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nalice'
        b"\r\n--b0undary--\r\n"
    )
    return raw_post(body, "multipart/form-data; boundary=b0undary")(store)


def served_disposition(url: str) -> str:
    """The Content-Disposition S3 (moto, through ``mock_aws``) answers on a presigned URL."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert "X-Injected" not in response.headers
    disposition: str = response.headers["Content-Disposition"]
    return disposition


#: ``attachment`` and exactly two parameters (RFC 6266): a quoted ASCII fallback that
#: contains no quote or backslash (so nothing can close it early), and the UTF-8 name
#: percent-encoded (RFC 8187 attr-chars only), which browsers prefer.
_DISPOSITION = re.compile(
    r"attachment; filename=\"(?P<fallback>[\x20-\x7e]*)\"; "
    r"filename\*=UTF-8''(?P<encoded>[A-Za-z0-9!#$&+.^_`|~%-]*)"
)


def filename_of(disposition: str) -> str:
    """The filename a browser reads from the Content-Disposition; fails if malformed."""
    match = _DISPOSITION.fullmatch(disposition)
    assert match, f"not one attachment with two filename parameters: {disposition!r}"
    assert '"' not in match["fallback"] and "\\" not in match["fallback"], disposition
    return unquote(match["encoded"], errors="strict")


@pytest.mark.parametrize(
    ("form", "sent", "stored"),
    [pytest.param(*case[1:], id=case[0]) for case in NEUTRALISED_FILENAMES],
)
def test_hostile_filename_is_stored_sanitised_and_cannot_inject_headers(
    store: Store, form: str, sent: str, stored: str
) -> None:
    created = upload_named(store, form, sent)
    assert created.status_code == 201, created.body
    record = created.json_body
    assert record["filename"] == stored
    assert not _CONTROL.search(stored) and "/" not in stored and "\\" not in stored
    assert re.fullmatch(r"images/[0-9a-f-]{36}/[0-9a-f]{16}\.png", record["s3_key"])

    view = store.client.http.get(f"/images/{record['image_id']}?download=true").json_body
    redirect = store.client.http.get(f"/images/{record['image_id']}/download")
    assert redirect.status_code == 302
    for url in (view["download_url"], redirect.headers["Location"]):
        disposition = served_disposition(url)
        assert filename_of(disposition) == stored

    # Clean up, so the module's counts stay those of the two seeded images.
    deleted = store.client.http.delete(
        f"/images/{record['image_id']}", headers={"X-User-Id": "alice"}
    )
    assert deleted.status_code == 200
