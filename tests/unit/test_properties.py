"""Property-based tests (Hypothesis) of the hostile-input guarantees.

1. The validation functions, fed anything, either return a value that obeys the rules or
   raise :class:`~chalicelib.errors.InvalidInputError` (or its 413/415 subclasses): never
   another exception, which the API would turn into a 500.
2. Pagination: for random images (a few users and tags, ``created_at`` over a few months
   with repeated timestamps and month edges), random filters and page sizes, the pages of
   ``ImageService.list_images`` concatenate to exactly the newest-first result of a
   brute-force filter over the inserted records: no duplicate, no gap, every page but the
   last full, no empty page after a full one.

Bounded (``max_examples``) so the module runs in well under a minute. A failure prints
the minimal example; Hypothesis replays it first on the next run (``.hypothesis/``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from urllib3 import encode_multipart_formdata

from chalicelib import imaging, validation
from chalicelib.errors import InvalidInputError
from chalicelib.metadata import ImageRecord
from chalicelib.pagination import PageTokenCodec
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService
from chalicelib.storage import attachment_disposition
from chalicelib.validation import (
    ListQuery,
    check_declared_type,
    fold_text,
    format_timestamp,
    normalize_tags,
    parse_list_query,
    parse_upload,
    parse_view_options,
    sanitize_filename,
    validate_metadata,
    validate_user_id,
)
from tests.unit.conftest import SETTINGS, create_resources, image_bytes, use_fake_aws_environment
from tests.unit.test_hostile_input import filename_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FAST = settings(max_examples=150, deadline=None)
LIMITS = imaging.ImageLimits.from_settings(SETTINGS)

# --- strategies: anything a client can send ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=12)
        | st.dictionaries(st.text(max_size=20), children, max_size=25)
    ),
    max_leaves=30,
)
#: Strings a client may send for a field: random text, and near-misses of valid values.
#: (No lone surrogates: they cannot travel in UTF-8; JSON bodies escape them below.)
field_text = st.text(max_size=140) | st.sampled_from(
    ["", " ", "alice", "a,b", "Cat, DOG ,cat", "x" * 64, "x" * 65, "a#b", "🐱"]
)
UPLOAD_FIELDS = [
    "image_base64",
    "image_data",
    "filename",
    "content_type",
    "user_id",
    "title",
    "description",
    "tags",
    "metadata",
]
FORM_FIELDS = ["file", "image", "user_id", "title", "description", "tags", "metadata"]
LIST_PARAMETERS = sorted(validation._LIST_PARAMETERS)
VIEW_PARAMETERS = sorted(validation._VIEW_PARAMETERS)
BOUNDARY = "b0undary"
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        f"multipart/form-data; boundary={BOUNDARY}",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=other",
        "text/plain",
        "",
    ]
) | st.text(max_size=60)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    keys = st.sampled_from(UPLOAD_FIELDS) | st.text(max_size=12)
    values = json_values | field_text | st.just("\ud800")  # JSON can carry "\\ud800"
    document = draw(st.dictionaries(keys, values, max_size=10))
    return json.dumps(document).encode()


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    names = st.sampled_from(FORM_FIELDS) | st.text(max_size=12)
    parts: list[tuple[str, Any]] = []
    for name in draw(st.lists(names, max_size=8)):
        data = draw(
            st.binary(max_size=200) | field_text.map(lambda s: s.encode("utf-8", "replace"))
        )
        if draw(st.booleans()):
            filename = draw(field_text)
            parts.append((name, (filename, data, draw(st.sampled_from(["image/png", "x/y", ""])))))
        else:
            parts.append((name, data))
    body, _ = encode_multipart_formdata(parts, boundary=BOUNDARY)
    cut = draw(st.integers(0, len(body)))  # sometimes the whole body, sometimes cut short
    return body if draw(st.booleans()) else body[:cut]


query_params = st.dictionaries(
    st.sampled_from(LIST_PARAMETERS + VIEW_PARAMETERS + ["colour"]) | st.text(max_size=10),
    st.lists(
        field_text
        | st.sampled_from(["1", "100", "0", "-1", "abc", "2026-11-21", "2026-13-01", "1,2"]),
        max_size=2,
    ),
    max_size=6,
)


def _seed_images() -> list[bytes]:
    generated = [image_bytes(fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP")]
    committed = [
        (FIXTURES / name).read_bytes()
        for name in ("exif.jpg", "animated.gif", "alpha.png", "photo.webp")
    ]
    return generated + committed


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with random bytes overwritten, deleted or inserted."""
    data = bytearray(draw(st.sampled_from(_seed_images())))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "delete", "insert"]))
        if action == "set":
            data[position] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


# --- 1. validation raises only the domain's validation error ----------------------------


def returns_or_refuses(function: Any, *args: Any) -> Any:
    """Call ``function``; an InvalidInputError (incl. 413/415) is a refusal, None here."""
    try:
        return function(*args)
    except InvalidInputError as error:
        assert str(error).startswith(f"{error.field}:")
        return None


@FAST
@given(
    body=json_bodies() | multipart_bodies() | st.binary(max_size=300), content_type=CONTENT_TYPES
)
def test_parse_upload_returns_a_valid_upload_or_refuses(body, content_type):
    default_user = "bob" if len(body) % 2 else None
    parse = functools.partial(
        parse_upload, max_request_bytes=64 * 1024, default_user_id=default_user
    )
    upload = returns_or_refuses(parse, body, content_type)
    if upload is not None:
        assert validation.USER_ID_PATTERN.fullmatch(upload.user_id)
        assert len(upload.tags) <= validation.MAX_TAGS
        assert all(validation.TAG_PATTERN.fullmatch(tag) for tag in upload.tags)
        assert len(upload.title) <= validation.MAX_TITLE_CHARS
        assert len(upload.description) <= validation.MAX_DESCRIPTION_CHARS
        assert all(isinstance(value, str) for value in upload.metadata.values())


@FAST
@given(params=query_params)
def test_parse_list_query_returns_a_valid_query_or_refuses(params):
    query = returns_or_refuses(parse_list_query, params)
    if query is not None:
        assert 1 <= query.limit <= validation.MAX_PAGE_SIZE
        assert len(query.tags) <= validation.MAX_TAGS
        if query.created_from and query.created_to:
            assert query.created_from <= query.created_to


@FAST
@given(params=query_params, default=st.integers(-(10**6), 10**6))
def test_parse_view_options_returns_valid_options_or_refuses(params, default):
    options = returns_or_refuses(parse_view_options, params, default)
    if options is not None:
        assert validation.MIN_URL_EXPIRES <= options.expires_in <= validation.MAX_URL_EXPIRES


@FAST
@given(value=json_values | field_text | st.lists(field_text, max_size=12))
def test_normalize_tags_returns_valid_tags_or_refuses(value):
    tags = returns_or_refuses(normalize_tags, value)
    if tags is not None:
        assert len(tags) <= validation.MAX_TAGS and len(set(tags)) == len(tags)
        assert all(validation.TAG_PATTERN.match(tag) for tag in tags)


@FAST
@given(value=json_values | field_text)
def test_validate_user_id_returns_a_valid_id_or_refuses(value):
    user_id = returns_or_refuses(validate_user_id, value)
    assert user_id is None or validation.USER_ID_PATTERN.match(user_id)


@FAST
@given(value=json_values | st.dictionaries(field_text, field_text | json_values, max_size=22))
def test_validate_metadata_returns_string_values_or_refuses(value):
    metadata = returns_or_refuses(validate_metadata, value)
    if metadata is not None:
        assert len(metadata) <= validation.MAX_METADATA_KEYS
        assert all(isinstance(item, str) for item in metadata.values())


@FAST
@given(
    declared=st.none() | field_text | st.text(max_size=40),
    actual=st.sampled_from(list(imaging.FORMATS)),
)
def test_check_declared_type_accepts_or_refuses(declared, actual):
    returns_or_refuses(check_declared_type, declared, actual, "content_type")


@FAST
@given(token=st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.hex()))
def test_page_token_decode_refuses_anything_it_did_not_issue(token):
    codec = PageTokenCodec(SETTINGS.token_secret)
    assert returns_or_refuses(codec.decode, token, ListQuery().filters()) is None


# Pillow warns about what it refuses next (truncated reads, huge sizes): expected here.
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")
@settings(max_examples=200, deadline=None)
@given(data=mutated_images() | st.binary(max_size=400))
def test_probe_and_process_of_corrupt_bytes_return_or_refuse(data):
    info = returns_or_refuses(imaging.probe, data, LIMITS)
    if info is not None:
        assert info.content_type in imaging.FORMATS
        assert info.width >= 1 and info.height >= 1
        returns_or_refuses(imaging.process, data, LIMITS)


@FAST
@given(
    fmt=st.sampled_from(["JPEG", "PNG", "GIF", "WEBP"]),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
)
def test_every_valid_image_decodes_whatever_its_size(fmt, width, height):
    data = image_bytes(fmt, (width, height))

    assert imaging.probe(data, LIMITS).width == width
    assert imaging.process(data, LIMITS).info.width == width


@FAST
@given(
    raw=st.none() | field_text | st.text(max_size=400), extension=st.sampled_from(["jpg", "png"])
)
def test_sanitized_filename_is_safe_and_its_disposition_cannot_be_injected(raw, extension):
    name = sanitize_filename(raw, extension)  # never refuses: any name is made safe
    assert 1 <= len(name) <= validation.MAX_FILENAME_CHARS
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    assert filename_of(attachment_disposition(name)) == name


# --- 2. pagination: pages concatenate to the full newest-first result -------------------

USERS = ["alice", "bob", "carol"]
TAGS = ["cat", "dog", "sun", "sea"]
TITLES = [
    "Sunset",
    "sunrise at sea",
    "Cat nap",
    "",
    "BEACH day",
    "Größe",
    "İstanbul",
    "\uff33\uff55\uff4e",
]
START = datetime(2026, 8, 30, tzinfo=UTC)
SPAN_MS = 100 * 24 * 3600 * 1000  # ~3 months: August to December
#: Month edges, where a listing moves from one feed partition to the next.
EDGES = [
    "2026-08-31T23:59:59.999Z",
    "2026-09-01T00:00:00.000Z",
    "2026-10-31T23:59:59.999Z",
    "2026-11-01T00:00:00.000Z",
]
timestamps = st.sampled_from(EDGES) | st.integers(0, SPAN_MS).map(
    lambda ms: format_timestamp(START + timedelta(milliseconds=ms))
)


@st.composite
def image_sets(draw: st.DrawFn) -> list[ImageRecord]:
    """Up to 14 records; their timestamps come from a small pool, so many are equal."""
    pool = draw(st.lists(timestamps, min_size=1, max_size=8))
    records = []
    for _ in range(draw(st.integers(0, 14) | st.integers(8, 14))):
        image_id = str(draw(st.uuids(version=4)))
        created_at = draw(st.sampled_from(pool))
        records.append(
            ImageRecord(
                image_id=image_id,
                user_id=draw(st.sampled_from(USERS)),
                title=draw(st.sampled_from(TITLES)),
                description="",
                tags=draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=3)),
                metadata={},
                filename="photo.png",
                content_type="image/png",
                size_bytes=1,
                width=1,
                height=1,
                sha256="0" * 64,
                s3_key=f"images/{image_id}.png",
                created_at=created_at,
                updated_at=created_at,
            )
        )
    return records


@st.composite
def list_filters(draw: st.DrawFn, records: list[ImageRecord]) -> dict[str, list[str]]:
    """``GET /images`` parameters (without limit and token), bounds often at stored times."""
    params: dict[str, list[str]] = {}
    sometimes = st.sampled_from([True, False, False])  # each filter in a third of queries
    if draw(sometimes):
        params["user_id"] = [draw(st.sampled_from(USERS))]
    if draw(sometimes):
        tags = draw(st.lists(st.sampled_from(TAGS), unique=True, min_size=1, max_size=2))
        params["tags"] = [",".join(tags)]
    bound = st.sampled_from([r.created_at for r in records] or EDGES) | timestamps
    if draw(sometimes):
        bounds = sorted(draw(st.lists(bound, min_size=1, max_size=2)))
        side = draw(st.sampled_from(["date_from", "date_to", "both"]))
        if side in ("date_from", "both"):
            params["date_from"] = [bounds[0]]
        if side in ("date_to", "both"):
            params["date_to"] = [bounds[-1]]
    if draw(sometimes):
        params["title"] = [
            draw(st.sampled_from(["sun", "SUN", "cat", "a", "zzz", "GRÖSSE", "istanbul"]))
        ]
    return params


def brute_force(records: list[ImageRecord], query: ListQuery) -> list[str]:
    """The image ids a listing must return, newest first, by filtering every record."""

    def matches(record: ImageRecord) -> bool:
        return (
            (query.user_id is None or record.user_id == query.user_id)
            and all(tag in record.tags for tag in query.tags)
            and (query.created_from is None or record.created_at >= query.created_from)
            and (query.created_to is None or record.created_at <= query.created_to)
            and (query.title is None or query.title in fold_text(record.title))
        )

    newest_first = sorted(filter(matches, records), key=lambda r: r.sort_key, reverse=True)
    return [record.image_id for record in newest_first]


@pytest.fixture(scope="module")
def aws_clients() -> Iterator[AwsClients]:
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws_environment(env)
        with mock_aws():
            clients = AwsClients.from_settings(SETTINGS)
            create_resources(clients)  # the bucket; each example gets its own table
            yield clients


@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records=image_sets(), data=st.data())
def test_pages_concatenate_to_the_full_newest_first_result(aws_clients, records, data):
    table = f"props-{uuid.uuid4().hex}"
    create_table(aws_clients.dynamodb, table)
    try:
        settings_ = dataclasses.replace(SETTINGS, table_name=table)
        service = ImageService.from_settings(settings_, aws_clients)
        for record in records:
            service.metadata.put_image(record)
        for _ in range(data.draw(st.integers(1, 3), label="queries on this set")):
            filters = data.draw(list_filters(records), label="filters")
            limit = data.draw(st.sampled_from([1, 1, 2, 2, 3, 4, 5, 100]), label="limit")
            expected = brute_force(records, parse_list_query(filters))
            pages = list_every_page(service, filters, limit, max_pages=len(records) + 1)
            listed = [item["image_id"] for page in pages for item in page["items"]]
            event(f"pages: {min(len(pages), 4)}{'+' if len(pages) > 4 else ''}")
            assert listed == expected, {"filters": filters, "limit": limit}
            assert len(set(listed)) == len(listed)
            for page in pages:
                assert page["count"] == len(page["items"])
            for page in pages[:-1]:
                assert page["count"] == limit
            assert 1 <= pages[-1]["count"] <= limit or listed == []
    finally:
        aws_clients.dynamodb.delete_table(TableName=table)


def list_every_page(
    service: ImageService, filters: dict[str, list[str]], limit: int, max_pages: int
) -> list[dict[str, Any]]:
    """Follow ``next_token`` from the first page to the last (at most ``max_pages``)."""
    pages: list[dict[str, Any]] = []
    token = None
    while len(pages) < max_pages:
        params = {**filters, "limit": [str(limit)]}
        if token is not None:
            params["next_token"] = [token]
        page = service.list_images(parse_list_query(params))
        pages.append(page)
        token = page["next_token"]
        if token is None:
            return pages
    raise AssertionError(f"still a next_token after {max_pages} pages: {pages[-1]}")
