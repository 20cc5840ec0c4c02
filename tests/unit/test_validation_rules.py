"""One test per validation rule of ``POST /images``, ``GET /images`` and ``GET /images/{id}``.

Every refusal is checked through the HTTP layer (Chalice's test client over moto): the
status, Chalice's error shape ``{"Code", "Message"}``, a Message that starts with the
field at fault (``"<field>: ..."``), and that nothing reached S3 or DynamoDB.

Field-naming failures raise :class:`FieldNotNamed` (an AssertionError), so a rule whose
only defect is the field named in the Message can be marked
``xfail(strict=True, raises=FieldNotNamed)`` while a wrong status or a write on bad
input still fails the run.

Speed: this module has over 200 cases, and building a moto bucket, table and boto3 clients
costs 0.3-1 s per test. So ``client``, ``s3`` and ``ddb`` here override conftest's with
the same wiring (same settings, ``ImageService`` built the same way, installed with
``app.use_service``) inside one module-wide ``mock_aws``, and every test starts from an
emptied bucket and table.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from PIL import Image
from urllib3 import encode_multipart_formdata

import app as app_module
from chalicelib.config import Settings
from chalicelib.schema import PARTITION_KEY, SORT_KEY
from chalicelib.service import AwsClients
from tests.unit.conftest import (
    BUCKET,
    SETTINGS,
    START,
    TABLE,
    FixedClock,
    build_service,
    create_resources,
    image_bytes,
    post_form,
    post_json,
    upload,
    use_fake_aws_environment,
)

JSON = "json"
FORM = "multipart"
MAX_BYTES = SETTINGS.max_image_bytes
MAX_PIXELS = SETTINGS.max_image_pixels
#: The field that carries the image bytes in each form.
IMAGE_FIELD = {JSON: "image_base64", FORM: "file"}
#: The field that carries the declared content type in each form.
DECLARED_FIELD = {JSON: "content_type", FORM: "file"}
OMIT = object()


class FieldNotNamed(AssertionError):
    """The error Message does not start with the field at fault."""


def forms(*, json_marks: Any = (), form_marks: Any = ()) -> list[Any]:
    """Both request forms as params (marks: e.g. an xfail on one form only)."""
    return [
        pytest.param(JSON, id=JSON, marks=json_marks),
        pytest.param(FORM, id=FORM, marks=form_marks),
    ]


# --- one AWS mock for the module --------------------------------------------------------


@dataclass
class SharedAws:
    settings: Settings
    clients: AwsClients
    s3: Any
    ddb: Any


@pytest.fixture(scope="module")
def shared_aws() -> Iterator[SharedAws]:
    """What conftest's ``aws`` + ``service`` fixtures build, once for the module."""
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws_environment(env)
        with mock_aws():
            clients = AwsClients.from_settings(SETTINGS)
            create_resources(clients)
            yield SharedAws(SETTINGS, clients, boto3.client("s3"), boto3.client("dynamodb"))


@pytest.fixture(scope="module")
def shared_client(shared_aws: SharedAws) -> Iterator[Client]:
    with Client(app_module.app) as test_client:
        yield test_client
    app_module.use_service(None)


@pytest.fixture
def s3(shared_aws: SharedAws) -> Any:
    """Overrides conftest's ``s3``: a plain boto3 S3 client inside the module's mock."""
    return shared_aws.s3


@pytest.fixture
def ddb(shared_aws: SharedAws) -> Any:
    """A plain boto3 DynamoDB client inside the module's mock."""
    return shared_aws.ddb


@pytest.fixture
def client(shared_aws: SharedAws, shared_client: Client) -> Client:
    """Overrides conftest's ``client``: the same app, a fresh service (built as conftest's
    ``service`` fixture builds it, but on the module's clients), an emptied store."""
    app_module.use_service(build_service(shared_aws.clients, FixedClock(START)))
    s3, ddb = shared_aws.s3, shared_aws.ddb
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            key = {PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]}
            ddb.delete_item(TableName=TABLE, Key=key)
    assert_nothing_written(s3, ddb)
    return shared_client


# --- store and response checks ----------------------------------------------------------


def stored(s3: Any, ddb: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Every object key in the bucket and every item in the table."""
    objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    items = ddb.scan(TableName=TABLE)["Items"]
    return sorted(obj["Key"] for obj in objects), items


def assert_nothing_written(s3: Any, ddb: Any) -> None:
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert ddb.scan(TableName=TABLE)["Items"] == []


def assert_error(response: Any, status: int, code: str, field: str) -> str:
    """Status, Chalice error shape and Code; then that the Message names ``field``."""
    assert response.status_code == status, response.body
    body = response.json_body
    assert isinstance(body, dict) and set(body) == {"Code", "Message"}, body
    assert body["Code"] == code, body
    message: str = body["Message"]
    if not message.startswith(f"{field}:"):
        raise FieldNotNamed(f"expected the Message to name {field!r}: {message!r}")
    return message


def bad_request(response: Any, field: str) -> str:
    return assert_error(response, 400, "BadRequestError", field)


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.body
    record: dict[str, Any] = response.json_body
    assert response.headers["Location"] == f"/images/{record['image_id']}"
    return record


# --- requests ---------------------------------------------------------------------------


def send(
    client: Any,
    form: str,
    data: bytes,
    *,
    declared: str | None = None,
    filename: Any = "photo.png",
    image_field: str | None = None,
    path: str = "/images",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    """Upload ``data`` in ``form``; ``user_id`` defaults to alice (pass OMIT to leave it out).

    In multipart, a list value is sent as a repeated field, a dict as JSON text, and the
    file part's Content-Type is ``declared`` (``application/octet-stream`` by default).
    """
    fields.setdefault("user_id", "alice")
    fields = {name: value for name, value in fields.items() if value is not OMIT}
    if form == JSON:
        body: dict[str, Any] = {image_field or "image_base64": base64.b64encode(data).decode()}
        if filename is not OMIT:
            body["filename"] = filename
        if declared is not None:
            body["content_type"] = declared
        return post_json(client, {**body, **fields}, path, headers)
    parts: list[tuple[str, Any]] = [
        (image_field or "file", (filename, data, declared or "application/octet-stream"))
    ]
    for name, value in fields.items():
        if isinstance(value, list):
            parts.extend((name, item) for item in value)
        elif isinstance(value, dict):
            parts.append((name, json.dumps(value)))
        else:
            parts.append((name, value))
    return post_form(client, parts, path, headers)


def post_raw(client: Any, body: bytes | str, content_type: str, path: str = "/images") -> Any:
    return client.http.post(path, headers={"Content-Type": content_type}, body=body)


# --- images -----------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@functools.cache
def noisy_jpeg() -> bytes:
    # Seeded: libjpeg silently repairs some corruptions of some noise (about one seed in
    # fifteen decodes "successfully" after the damage below), which Pillow cannot see.
    noise = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))
    return _encode(noise, "JPEG", quality=95)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels, compressed row by row.

    One colour compresses about 1000:1, so 5000x5000 (25 M pixels) is ~3 KB and
    20000x20000 (400 M pixels, over twice Pillow's own bomb limit) is ~50 KB.
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", idat),
            _png_chunk(b"IEND", b""),
        ]
    )


def not_an_image(kind: str) -> bytes:
    if kind == "text":
        return b"hello, this is plain text and not an image\n"
    if kind == "bmp":
        return image_bytes("BMP")
    if kind == "tiff":
        return image_bytes("TIFF")
    if kind == "truncated-jpeg":
        data = noisy_jpeg()
        return data[: len(data) * 2 // 3]
    if kind == "corrupt-jpeg":
        # Valid header, broken entropy-coded data: only a decode finds it.
        data = bytearray(noisy_jpeg())
        for index in range(len(data) // 2, len(data) // 2 + 2000, 7):
            data[index] = 0xFF
        return bytes(data)
    if kind == "truncated-png":
        data = image_bytes("PNG", (64, 64))
        return data[: len(data) // 2]
    raise AssertionError(kind)


# ========================================================================================
# Upload: type sniffing
# ========================================================================================


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    "kind", ["text", "bmp", "tiff", "truncated-jpeg", "corrupt-jpeg", "truncated-png"]
)
def test_bytes_that_are_not_an_accepted_image_are_415(client, s3, ddb, form, kind):
    # Declared as what the header claims, so only the pixels are at fault.
    declared = "image/jpeg" if kind.endswith("-jpeg") else "image/png"
    response = send(client, form, not_an_image(kind), declared=declared)
    assert_nothing_written(s3, ddb)
    assert_error(response, 415, "UnsupportedMediaTypeError", IMAGE_FIELD[form])


@pytest.mark.parametrize("form", forms())
def test_empty_image_is_400(client, s3, ddb, form):
    response = send(client, form, b"")
    assert_nothing_written(s3, ddb)
    bad_request(response, IMAGE_FIELD[form])


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    ("fmt", "declared"),
    [("PNG", "image/jpeg"), ("JPEG", "image/png"), ("GIF", "image/webp"), ("PNG", "text/plain")],
    ids=["png-declared-jpeg", "jpeg-declared-png", "gif-declared-webp", "png-declared-text"],
)
def test_declared_type_contradicting_the_bytes_is_400(client, s3, ddb, form, fmt, declared):
    response = send(client, form, image_bytes(fmt), declared=declared)
    assert_nothing_written(s3, ddb)
    message = bad_request(response, DECLARED_FIELD[form])
    assert declared in message


def test_data_url_type_contradicting_the_bytes_is_400(client, s3, ddb):
    encoded = base64.b64encode(image_bytes("PNG")).decode()
    response = post_json(
        client, {"image_base64": f"data:image/jpeg;base64,{encoded}", "user_id": "alice"}
    )
    assert_nothing_written(s3, ddb)
    bad_request(response, "content_type")


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    ("fmt", "declared", "stored_type"),
    [
        ("PNG", "application/octet-stream", "image/png"),
        ("JPEG", "image/jpg", "image/jpeg"),
        ("PNG", "IMAGE/PNG; charset=binary", "image/png"),
    ],
    ids=["octet-stream-declares-nothing", "image-jpg-alias", "case-and-parameters-ignored"],
)
def test_undeclared_or_alias_type_is_accepted(client, form, fmt, declared, stored_type):
    record = created(send(client, form, image_bytes(fmt), declared=declared))
    assert record["content_type"] == stored_type


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
    ids=["jpeg", "png", "gif", "webp"],
)
def test_each_accepted_format_is_stored_with_sniffed_type_and_size(
    client, s3, form, fmt, content_type
):
    data = image_bytes(fmt, (37, 19))
    # Declared as octet-stream: the stored type comes from the bytes, not the client.
    record = created(send(client, form, data, filename="upload.bin"))
    assert (record["content_type"], record["width"], record["height"]) == (content_type, 37, 19)
    assert record["size_bytes"] == len(data)
    assert record["s3_key"].endswith("." + content_type.split("/")[1].replace("jpeg", "jpg"))
    head = s3.head_object(Bucket=BUCKET, Key=record["s3_key"])
    assert head["ContentType"] == content_type


# ========================================================================================
# Upload: size
# ========================================================================================


def _padded_png(total: int) -> bytes:
    """A valid PNG followed by padding up to ``total`` bytes."""
    data = image_bytes("PNG")
    return data + b"\0" * (total - len(data))


@pytest.mark.parametrize("form", forms())
def test_image_one_byte_over_max_image_bytes_is_413(client, s3, ddb, form):
    response = send(client, form, _padded_png(MAX_BYTES + 1))
    assert_nothing_written(s3, ddb)
    message = assert_error(response, 413, "RequestEntityTooLargeError", IMAGE_FIELD[form])
    assert str(MAX_BYTES) in message


@pytest.mark.parametrize("form", forms())
def test_request_body_far_over_the_limit_is_413_before_parsing(client, s3, ddb, form):
    response = send(client, form, b"\0" * (2 * MAX_BYTES))
    assert_nothing_written(s3, ddb)
    assert_error(response, 413, "RequestEntityTooLargeError", IMAGE_FIELD[form])


@pytest.mark.parametrize("form", forms())
def test_image_of_exactly_max_image_bytes_is_accepted(client, form):
    record = created(send(client, form, _padded_png(MAX_BYTES)))
    # Accepted; the stored original is rebuilt from the allowlist, so the padding is gone.
    assert 0 < record["size_bytes"] < MAX_BYTES


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    "size",
    [(5000, 5000), (20000, 20000), (2001, 2000)],
    ids=["5000x5000-over-max-pixels", "20000x20000-over-pillow-limit", "2001x2000-just-over"],
)
def test_decompression_bomb_is_413(client, s3, ddb, form, size):
    data = blank_png(*size)
    assert len(data) < 64 * 1024  # tiny on the wire, huge once decoded
    response = send(client, form, data, declared="image/png")
    assert_nothing_written(s3, ddb)
    message = assert_error(response, 413, "RequestEntityTooLargeError", IMAGE_FIELD[form])
    assert "pixels" in message or "bomb" in message


@pytest.mark.parametrize("form", forms())
def test_image_of_exactly_max_image_pixels_is_accepted(client, form):
    record = created(send(client, form, blank_png(2000, 2000), declared="image/png"))
    assert (record["width"], record["height"]) == (2000, 2000)


# ========================================================================================
# Upload: tags
# ========================================================================================


@pytest.mark.parametrize("form", forms())
def test_tags_are_trimmed_lowercased_deduplicated(client, form):
    record = created(send(client, form, image_bytes(), tags=" Cat,cat, BEACH "))
    assert record["tags"] == ["cat", "beach"]


def test_multipart_repeated_tags_field_is_merged(client):
    record = created(send(client, FORM, image_bytes(), tags=[" Cat", "beach,CAT", "dog"]))
    assert record["tags"] == ["cat", "beach", "dog"]


def test_json_tags_as_a_list(client):
    record = created(send(client, JSON, image_bytes(), tags=["Cat", " beach ", "cat", "a,b"]))
    assert record["tags"] == ["cat", "beach", "a", "b"]


@pytest.mark.parametrize("form", forms())
def test_empty_tag_entries_are_dropped(client, form):
    # Documented decision: "a,,b" and blank entries are ignored, not refused.
    record = created(send(client, form, image_bytes(), tags="a,,b, ,"))
    assert record["tags"] == ["a", "b"]


@pytest.mark.parametrize("form", forms())
def test_tag_limits_are_inclusive(client, form):
    tags = [f"t{i}" for i in range(9)] + ["x" * 64]
    record = created(send(client, form, image_bytes(), tags=",".join(tags)))
    assert record["tags"] == tags


TAG_REFUSALS = {
    "eleven-distinct-tags": ",".join(f"t{i}" for i in range(11)),
    "65-char-tag": "x" * 65,
    "space-inside-a-tag": "good,two words",
    "hash-in-a-tag": "#sunset",
    "non-ascii-tag": "café",
}


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize("tags", list(TAG_REFUSALS.values()), ids=list(TAG_REFUSALS))
def test_invalid_tags_are_400(client, s3, ddb, form, tags):
    response = send(client, form, image_bytes(), tags=tags)
    assert_nothing_written(s3, ddb)
    bad_request(response, "tags")


@pytest.mark.parametrize(
    "tags", [["cat", 7], ["cat", None], 42, {"cat": True}], ids=["int", "null", "number", "object"]
)
def test_json_tags_that_are_not_strings_are_400(client, s3, ddb, tags):
    response = send(client, JSON, image_bytes(), tags=tags)
    assert_nothing_written(s3, ddb)
    bad_request(response, "tags")


# ========================================================================================
# Upload: user_id
# ========================================================================================

USER_ID_REFUSALS = {
    "missing": OMIT,
    "empty": "",
    "129-chars": "u" * 129,
    "slash": "a/b",
    "space": "a b",
    "non-ascii": "zoë",
}


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize("user_id", list(USER_ID_REFUSALS.values()), ids=list(USER_ID_REFUSALS))
def test_invalid_user_id_is_400(client, s3, ddb, form, user_id):
    response = send(client, form, image_bytes(), user_id=user_id)
    assert_nothing_written(s3, ddb)
    bad_request(response, "user_id")


@pytest.mark.parametrize("user_id", [42, ["alice"]], ids=["number", "list"])
def test_json_user_id_that_is_not_a_string_is_400(client, s3, ddb, user_id):
    response = send(client, JSON, image_bytes(), user_id=user_id)
    assert_nothing_written(s3, ddb)
    bad_request(response, "user_id")


@pytest.mark.parametrize("form", forms())
def test_user_id_of_128_allowed_characters_is_accepted(client, form):
    user_id = ("Ab9_.@-" * 19)[:128]
    assert created(send(client, form, image_bytes(), user_id=user_id))["user_id"] == user_id


@pytest.mark.parametrize("form", forms())
def test_x_user_id_header_is_used_when_the_body_has_none(client, form):
    response = send(client, form, image_bytes(), user_id=OMIT, headers={"X-User-Id": "bob"})
    assert created(response)["user_id"] == "bob"


@pytest.mark.parametrize("form", forms())
def test_body_user_id_wins_over_the_header(client, form):
    response = send(client, form, image_bytes(), user_id="carol", headers={"X-User-Id": "bob"})
    assert created(response)["user_id"] == "carol"


@pytest.mark.parametrize("form", forms())
def test_invalid_x_user_id_header_is_400(client, s3, ddb, form):
    response = send(client, form, image_bytes(), user_id=OMIT, headers={"X-User-Id": "a/b"})
    assert_nothing_written(s3, ddb)
    bad_request(response, "user_id")


# ========================================================================================
# Upload: title and description
# ========================================================================================


@pytest.mark.parametrize("form", forms())
@pytest.mark.parametrize(
    ("name", "value"),
    [("title", "t" * 201), ("description", "d" * 2001)],
    ids=["title-201-chars", "description-2001-chars"],
)
def test_text_field_over_its_limit_is_400(client, s3, ddb, form, name, value):
    response = send(client, form, image_bytes(), **{name: value})
    assert_nothing_written(s3, ddb)
    bad_request(response, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("title", 42),
        ("title", ["a"]),
        ("description", {"a": "b"}),
        ("filename", 7),
        ("content_type", True),
    ],
    ids=["title-number", "title-list", "description-object", "filename-number", "ct-bool"],
)
def test_json_text_field_that_is_not_a_string_is_400(client, s3, ddb, name, value):
    response = send(client, JSON, image_bytes(), **{name: value})
    assert_nothing_written(s3, ddb)
    bad_request(response, name)


@pytest.mark.parametrize("form", forms())
def test_text_fields_at_their_limits_are_accepted_and_trimmed(client, form):
    record = created(
        send(client, form, image_bytes(), title=" " + "t" * 200 + " ", description="d" * 2000)
    )
    assert (record["title"], record["description"]) == ("t" * 200, "d" * 2000)


@pytest.mark.parametrize(
    "name", ["user_id", "title", "description", "metadata"], ids=lambda name: f"{name}-twice"
)
def test_multipart_single_field_given_twice_is_400(client, s3, ddb, name):
    value = "{}" if name == "metadata" else "x"
    fields = [("file", ("a.png", image_bytes(), "image/png")), (name, value), (name, value)]
    if name != "user_id":
        fields.append(("user_id", "alice"))
    response = post_form(client, fields)
    assert_nothing_written(s3, ddb)
    bad_request(response, name)


# ========================================================================================
# Upload: filename
# ========================================================================================

LONG_STEM = "n" * 300
FILENAMES = {
    # "../../etc/passwd.png", CR/LF and quotes: tests/unit/test_hostile_input.py
    "windows-path": ("C:\\x\\y.png", "y.png"),
    "control-characters": ("ca\x00t\x07\x1f\x7f.png", "cat.png"),
    "bidi-override": ("evil\u202egnp.png", "evilgnp.png"),
    "leading-dots": ("..hidden.png", "hidden.png"),
    "empty": ("", "image.png"),
    "only-a-directory": ("dir/", "image.png"),
    "over-255-chars": (LONG_STEM + ".png", "n" * 251 + ".png"),
    "latin1-kept": ("café photo.png", "café photo.png"),
    "cjk-kept": ("照片.png", "照片.png"),
}


def _filename_cases() -> list[Any]:
    return [
        pytest.param(form, raw, expected, id=f"{name}-{form}")
        for name, (raw, expected) in FILENAMES.items()
        for form in (JSON, FORM)
    ]


@pytest.mark.parametrize(("form", "raw", "expected"), _filename_cases())
def test_filename_is_sanitised(client, form, raw, expected):
    record = created(send(client, form, image_bytes(), filename=raw, declared="image/png"))
    assert record["filename"] == expected
    assert len(record["filename"]) <= 255
    view = client.http.get(f"/images/{record['image_id']}?metadata_only=true").json_body
    assert view["filename"] == expected


def test_json_filename_missing_falls_back_to_the_sniffed_extension(client):
    record = created(send(client, JSON, image_bytes("GIF"), filename=OMIT))
    assert record["filename"] == "image.gif"


# ========================================================================================
# Upload: metadata
# ========================================================================================


@pytest.mark.parametrize("form", forms())
def test_metadata_object_of_strings_is_accepted_and_returned(client, form):
    metadata = {"caption": "At the beach", "camera": "X100V", "lens.mm": "23"}
    record = created(send(client, form, image_bytes(), metadata=metadata))
    assert record["metadata"] == metadata
    view = client.http.get(f"/images/{record['image_id']}?metadata_only=true").json_body
    assert view["metadata"] == metadata


METADATA_REFUSALS = {
    "non-object-list": (["caption"], "metadata"),
    "non-object-string": ("caption", "metadata"),
    "non-string-value": ({"caption": "ok", "iso": 100}, "metadata.iso"),
    "null-value": ({"caption": None}, "metadata.caption"),
    "value-over-1024-chars": ({"caption": "c" * 1025}, "metadata.caption"),
    "21-keys": ({f"k{i}": "v" for i in range(21)}, "metadata"),
    "bad-key": ({"bad key": "v"}, "metadata"),
    "empty-key": ({"": "v"}, "metadata"),
}


@pytest.mark.parametrize(
    ("metadata", "field"), list(METADATA_REFUSALS.values()), ids=list(METADATA_REFUSALS)
)
def test_invalid_json_metadata_is_400(client, s3, ddb, metadata, field):
    response = send(client, JSON, image_bytes(), metadata=metadata)
    assert_nothing_written(s3, ddb)
    bad_request(response, field)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("caption=beach", "metadata"),
        ('{"caption": "beach"', "metadata"),
        ('["caption"]', "metadata"),
        ('{"iso": 100}', "metadata.iso"),
        (json.dumps({f"k{i}": "v" for i in range(21)}), "metadata"),
    ],
    ids=["not-json", "truncated-json", "json-list", "non-string-value", "21-keys"],
)
def test_invalid_multipart_metadata_is_400(client, s3, ddb, text, field):
    response = send(client, FORM, image_bytes(), metadata=text)
    assert_nothing_written(s3, ddb)
    bad_request(response, field)


# ========================================================================================
# Upload: the JSON body
# ========================================================================================

PNG_B64 = base64.b64encode(image_bytes()).decode()
JSON_BODY_REFUSALS = {
    "invalid-json": ('{"image_base64": ', "body"),
    "not-utf8": (b'{"title": "\xff"}', "body"),
    "empty-body": ("", "body"),
    "array": ("[1, 2]", "body"),
    "string": ('"hello"', "body"),
    "null": ("null", "body"),
    "missing-image_base64": ('{"user_id": "alice"}', "image_base64"),
    "image_base64-null": ('{"user_id": "alice", "image_base64": null}', "image_base64"),
    "image_base64-number": ('{"user_id": "alice", "image_base64": 12}', "image_base64"),
    "invalid-base64": ('{"user_id": "alice", "image_base64": "not base64!"}', "image_base64"),
    "base64-bad-padding": ('{"user_id": "alice", "image_base64": "abc"}', "image_base64"),
    "invalid-base64-in-image_data": ('{"user_id": "alice", "image_data": "@@@"}', "image_data"),
}


@pytest.mark.parametrize(
    ("body", "field"), list(JSON_BODY_REFUSALS.values()), ids=list(JSON_BODY_REFUSALS)
)
def test_malformed_json_upload_is_400(client, s3, ddb, body, field):
    response = post_raw(client, body, "application/json")
    assert_nothing_written(s3, ddb)
    bad_request(response, field)


def test_json_image_data_alias_is_accepted(client):
    record = created(send(client, JSON, image_bytes("GIF"), image_field="image_data"))
    assert record["content_type"] == "image/gif"


@pytest.mark.parametrize(
    "prefix",
    ["data:image/png;base64,", "data:;base64,", "data:image/png;name=a.png;base64,"],
    ids=["typed", "untyped", "with-parameter"],
)
def test_json_data_url_prefix_is_accepted(client, prefix):
    record = created(post_json(client, {"image_base64": prefix + PNG_B64, "user_id": "alice"}))
    assert (record["content_type"], record["width"], record["height"]) == ("image/png", 32, 24)


def test_json_with_a_charset_parameter_is_accepted(client):
    body = json.dumps({"image_base64": PNG_B64, "user_id": "alice"})
    created(post_raw(client, body, "application/json; charset=utf-8"))


def test_json_base64_with_line_breaks_is_accepted(client):
    wrapped = "\n".join(PNG_B64[i : i + 76] for i in range(0, len(PNG_B64), 76))
    created(post_json(client, {"image_base64": wrapped, "user_id": "alice"}))


@pytest.mark.parametrize("form", forms())
def test_upload_alias_route_is_accepted(client, form):
    record = created(send(client, form, image_bytes(), path="/images/upload"))
    view = client.http.get(f"/images/{record['image_id']}?metadata_only=true")
    assert view.status_code == 200


# ========================================================================================
# Upload: the multipart body
# ========================================================================================


def test_multipart_image_part_alias_is_accepted(client):
    record = created(send(client, FORM, image_bytes("WEBP"), image_field="image"))
    assert record["content_type"] == "image/webp"


def _raw_form(fields: list[tuple[str, Any]]) -> tuple[bytes, str]:
    return encode_multipart_formdata(fields, boundary="b0undary")


def test_multipart_without_a_file_part_is_400(client, s3, ddb):
    response = post_form(client, [("user_id", "alice"), ("picture", ("a.png", image_bytes()))])
    assert_nothing_written(s3, ddb)
    bad_request(response, "file")


def test_multipart_with_two_image_parts_is_400(client, s3, ddb):
    fields = [
        ("user_id", "alice"),
        ("file", ("a.png", image_bytes(), "image/png")),
        ("image", ("b.png", image_bytes(), "image/png")),
    ]
    response = post_form(client, fields)
    assert_nothing_written(s3, ddb)
    bad_request(response, "file")


def test_multipart_without_boundary_is_400(client, s3, ddb):
    body, _ = _raw_form([("user_id", "alice"), ("file", ("a.png", image_bytes(), "image/png"))])
    response = post_raw(client, body, "multipart/form-data")
    assert_nothing_written(s3, ddb)
    bad_request(response, "Content-Type")


def test_multipart_with_a_wrong_boundary_is_400(client, s3, ddb):
    body, _ = _raw_form([("user_id", "alice"), ("file", ("a.png", image_bytes(), "image/png"))])
    response = post_raw(client, body, "multipart/form-data; boundary=something-else")
    assert_nothing_written(s3, ddb)
    bad_request(response, "body")


def test_multipart_part_without_a_name_is_400(client, s3, ddb):
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image_bytes() + b"\r\n--b0undary--\r\n"
    )
    response = post_raw(client, body, "multipart/form-data; boundary=b0undary")
    assert_nothing_written(s3, ddb)
    bad_request(response, "body")


def test_multipart_text_field_not_utf8_is_400(client, s3, ddb):
    fields = [("file", ("a.png", image_bytes(), "image/png")), ("user_id", "alice")]
    fields.append(("title", b"\xff\xfe caf\xe9"))
    response = post_form(client, fields)
    assert_nothing_written(s3, ddb)
    bad_request(response, "title")


# A request Content-Type other than multipart/form-data or JSON (415):
# tests/unit/test_hostile_input.py.

# ========================================================================================
# GET /images query strings
# ========================================================================================

LIST_REFUSALS = {
    # limit 0, 101, -1, abc and inverted date ranges: tests/unit/test_hostile_input.py
    "limit-float": ("limit=2.5", "limit"),
    "limit-repeated": ("limit=1&limit=2", "limit"),
    "date_from-not-a-date": ("date_from=yesterday", "date_from"),
    "date_from-month-13": ("date_from=2026-13-01", "date_from"),
    "date_to-not-a-date": ("date_to=2026-11-31", "date_to"),
    "date_range-3-parts": ("date_range=2026-01-01,2026-02-01,2026-03-01", "date_range"),
    "date_range-1-part": ("date_range=2026-01-01", "date_range"),
    "date_range-with-date_from": (
        "date_range=2026-01-01,2026-02-01&date_from=2026-01-01",
        "date_range",
    ),
    "date_range-bad-side": ("date_range=2026-01-01,soon", "date_to"),
    "unknown-parameter": ("limit=5&colour=red", "colour"),
    "unknown-parameter-typo": ("user=alice", "user"),
    "bad-tag-space": ("tag=two%20words", "tag"),
    "bad-tag-hash": ("tag=%23sunset", "tag"),
    "bad-tags-list": ("tags=cat,b%2Fad", "tags"),
    "eleven-tags": ("tags=" + ",".join(f"t{i}" for i in range(11)), "tags"),
    "bad-user_id": ("user_id=a%2Fb", "user_id"),
    "title-201-chars": ("title=" + "t" * 201, "title"),
    "next_token-garbage": ("next_token=garbage", "next_token"),
    "next_token-unsigned-jwt": (
        "next_token=eyJhbGciOiJub25lIn0.eyJjIjoieCJ9.",
        "next_token",
    ),
}


@pytest.mark.parametrize(("query", "field"), list(LIST_REFUSALS.values()), ids=list(LIST_REFUSALS))
def test_invalid_list_query_is_400(client, s3, ddb, query, field):
    response = client.http.get(f"/images?{query}")
    bad_request(response, field)
    assert_nothing_written(s3, ddb)


@pytest.mark.parametrize(
    "query",
    [
        "limit=1",
        "limit=100",
        "date_from=2026-11-21&date_to=2026-11-21",
        "date_from=2026-11-21T10:30:00Z&date_to=2026-11-21T12:00:00%2B01:00",
        "date_range=2026-11-01,",
        "date_range=,2026-12-01",
        "tag=CAT",
        "tags=%20cat%20,beach",
        "title=Sunset",
        "user_id=alice",
    ],
)
def test_valid_list_query_is_accepted(client, query):
    response = client.http.get(f"/images?{query}")
    assert response.status_code == 200, response.body
    assert response.json_body == {"items": [], "count": 0, "next_token": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date_to=9999-12-31T23:59:59-01:00", "date_to"),
        ("date_from=0001-01-01T00:00:00%2B01:00", "date_from"),
    ],
    ids=["date_to-past-year-9999-in-utc", "date_from-before-year-1-in-utc"],
)
def test_date_bound_outside_the_representable_range_is_400(client, s3, ddb, query, field):
    response = client.http.get(f"/images?{query}")
    bad_request(response, field)
    assert_nothing_written(s3, ddb)


def test_date_from_before_year_1000_is_accepted(client):
    response = client.http.get("/images?date_from=0999-01-01&date_to=2026-01-01")
    assert response.status_code == 200, response.body


def test_list_limit_defaults_to_20(client):
    for _ in range(21):
        upload(client)
    body = client.http.get("/images").json_body
    assert body["count"] == 20 and len(body["items"]) == 20
    assert body["next_token"] is not None
    rest = client.http.get(f"/images?next_token={body['next_token']}").json_body
    assert rest["count"] == 1 and rest["next_token"] is None


@pytest.fixture
def first_page(client) -> dict[str, Any]:
    """Three images by alice and a first page of one, with its next_token."""
    for _ in range(3):
        upload(client, tags=["cat"])
    body: dict[str, Any] = client.http.get("/images?user_id=alice&limit=1").json_body
    assert body["count"] == 1 and body["next_token"]
    return body


def _tamper(token: str, index: int) -> str:
    swapped = "B" if token[index] == "A" else "A"
    return token[:index] + swapped + token[index + 1 :]


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "claims", "signature"])
def test_next_token_with_one_character_changed_is_400(client, s3, ddb, first_page, part):
    token = first_page["next_token"]
    before = stored(s3, ddb)
    # A character in the middle of the segment: every bit of it is significant.
    start = sum(len(segment) + 1 for segment in token.split(".")[:part])
    index = start + len(token.split(".")[part]) // 2
    response = client.http.get(f"/images?user_id=alice&limit=1&next_token={_tamper(token, index)}")
    bad_request(response, "next_token")
    assert stored(s3, ddb) == before
    # The untouched token still works: the 400 is due to the change alone.
    again = client.http.get(f"/images?user_id=alice&limit=1&next_token={token}")
    assert again.status_code == 200 and again.json_body["count"] == 1


@pytest.mark.parametrize(
    "filters",
    [
        "",
        "user_id=bob",
        "tag=cat&user_id=alice",
        "user_id=alice&title=x",
        "user_id=alice&date_from=2026-01-01",
    ],
    ids=["no-filter", "other-user", "added-tag", "added-title", "added-date"],
)
def test_next_token_replayed_with_other_filters_is_400(client, s3, ddb, first_page, filters):
    before = stored(s3, ddb)
    query = "&".join(p for p in (filters, f"next_token={first_page['next_token']}") if p)
    response = client.http.get(f"/images?{query}")
    bad_request(response, "next_token")
    assert stored(s3, ddb) == before


def test_next_token_replayed_with_another_limit_is_accepted(client, first_page):
    response = client.http.get(
        f"/images?user_id=alice&limit=5&next_token={first_page['next_token']}"
    )
    assert response.status_code == 200 and response.json_body["count"] == 2


# ========================================================================================
# GET /images/{image_id}
# ========================================================================================

VIEW_REFUSALS = {
    "expires_in-59": ("expires_in=59", "expires_in"),
    "expires_in-3601": ("expires_in=3601", "expires_in"),
    "expires_in-x": ("expires_in=x", "expires_in"),
    "download-maybe": ("download=maybe", "download"),
    "metadata_only-maybe": ("metadata_only=maybe", "metadata_only"),
    "unknown-parameter": ("size=large", "size"),
}


@pytest.mark.parametrize(("query", "field"), list(VIEW_REFUSALS.values()), ids=list(VIEW_REFUSALS))
def test_invalid_view_query_is_400(client, s3, ddb, query, field):
    image_id = upload(client)["image_id"]
    before = stored(s3, ddb)
    response = client.http.get(f"/images/{image_id}?{query}")
    bad_request(response, field)
    assert stored(s3, ddb) == before


@pytest.mark.parametrize("expires_in", [60, 3600])
def test_view_expires_in_bounds_are_accepted(client, expires_in):
    image_id = upload(client)["image_id"]
    response = client.http.get(f"/images/{image_id}?expires_in={expires_in}&download=true")
    assert response.status_code == 200, response.body
    # The URL lives until the end of the clock's window (10:30 -> 11:00) + expires_in.
    assert response.json_body["expires_in"] == 1800 + expires_in
    assert f"X-Amz-Expires={3600 + expires_in}" in response.json_body["download_url"]


def test_view_expires_in_defaults_to_900(client):
    image_id = upload(client)["image_id"]
    assert client.http.get(f"/images/{image_id}").json_body["expires_in"] == 1800 + 900


@pytest.mark.parametrize(
    "image_id",
    [str(uuid.uuid4()), "not-a-uuid", "IMAGE%23x"],
    ids=["unknown-uuid", "not-a-uuid", "key-injection"],
)
@pytest.mark.parametrize("suffix", ["", "/download"], ids=["view", "download"])
def test_unknown_image_is_404(client, s3, ddb, image_id, suffix):
    upload(client)
    before = stored(s3, ddb)
    response = client.http.get(f"/images/{image_id}{suffix}")
    assert_error(response, 404, "NotFoundError", "image_id")
    assert stored(s3, ddb) == before
