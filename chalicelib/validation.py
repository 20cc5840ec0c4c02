"""Request parsing and validation: every rule a field must pass before anything is written.

Each function takes raw request input (bytes, strings, query parameters) and returns a
typed value, or raises an :class:`~chalicelib.errors.InvalidInputError` (or one of its
413/415 subclasses) whose message starts with the field at fault. Nothing here touches
AWS, so a bad request is refused before S3 or DynamoDB see it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from chalicelib.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedImageError,
)
from chalicelib.imaging import FORMATS

#: Filename extensions a type is saved under, by its canonical extension.
_EXTENSION_SPELLINGS = {"jpg": {"jpg", "jpeg", "jpe", "jfif"}}
#: Declared types that name the same format family as a sniffed type, by the family's
#: type (a type not listed is its own family). HEIF is one family: a browser types an
#: iPhone's HEIC ``image/heif``, and the ``-sequence`` types (bursts, live photos) hold the
#: same still images; AVIF stays its own (another codec). ``image/apng`` is a PNG.
_TYPE_FAMILIES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/apng": "image/png",
    "image/vnd.mozilla.apng": "image/png",
    "image/heif": "image/heic",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heic",
}
#: Declared types that say nothing about the bytes (curl's default for unknown files).
_UNDECLARED_TYPES = {"", "application/octet-stream", "binary/octet-stream"}

# Every pattern is applied with ``fullmatch``: it must match the whole string (``re.match``
# with ``$`` accepts a trailing newline, ``"alice\n"``).
MAX_TAGS = 10
#: Most raw entries one ``tags`` value may hold before de-duplication and dropping empty
#: ones (list elements, comma-separated pieces, repeated fields, JSON array elements):
#: parsing stops at the first entry past it, so no ``tags`` value costs more than this.
MAX_TAG_ENTRIES = 100
TAG_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_FILENAME_CHARS = 255
MAX_METADATA_KEYS = 20
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_METADATA_VALUE_CHARS = 1024
#: Fields of the record that a ``metadata`` object may carry instead of the request
#: (a common client shape); the request's own field of the same name wins.
RECORD_FIELDS_IN_METADATA = ("user_id", "title", "description", "tags")
#: Names of the multipart part that carries the image.
IMAGE_PARTS = ("file", "image", "image_data")
#: Most parts a multipart body may have (the image, six fields, tags repeated up to
#: :data:`MAX_TAG_ENTRIES` times would be 107; real clients send a handful).
MAX_FORM_PARTS = 128
#: Longest multipart boundary: RFC 2046 5.1.1 allows 1-70 characters.
MAX_BOUNDARY_CHARS = 70

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MIN_URL_EXPIRES = 60
MAX_URL_EXPIRES = 3600


@dataclass(frozen=True)
class UploadRequest:
    """A validated upload, from either request form.

    ``data`` is the raw image bytes and ``image_field`` the field that carried them
    (``file``, ``image``, ``image_base64`` or ``image_data``); ``filename`` is the client's
    name, not yet sanitised; ``declared_content_type`` is what the client claimed (None
    when it claimed nothing), and ``content_type_field`` names the field that carried it.
    """

    data: bytes
    image_field: str
    filename: str | None
    declared_content_type: str | None
    content_type_field: str
    user_id: str
    title: str
    description: str
    tags: list[str]
    metadata: dict[str, str]


@dataclass(frozen=True)
class ListQuery:
    """Validated ``GET /images`` filters.

    ``created_from``/``created_to`` are inclusive bounds in the stored ``created_at``
    format (``2026-11-21T10:30:00.123Z``); ``title`` is folded (:func:`fold_text`);
    ``limit`` is the page size (1-100).
    """

    user_id: str | None = None
    tags: tuple[str, ...] = ()
    created_from: str | None = None
    created_to: str | None = None
    title: str | None = None
    limit: int = DEFAULT_PAGE_SIZE
    next_token: str | None = None

    def filters(self) -> dict[str, Any]:
        """The filters a pagination token is bound to (everything but limit and token)."""
        return {
            "user_id": self.user_id,
            "tags": list(self.tags),
            "from": self.created_from,
            "to": self.created_to,
            "title": self.title,
        }


@dataclass(frozen=True)
class ViewOptions:
    """Validated ``GET /images/{id}`` options; ``expires_in`` is in seconds."""

    expires_in: int
    download: bool = False
    metadata_only: bool = False


# --- image fields -----------------------------------------------------------------------


def check_declared_type(declared: str | None, actual: str, field_name: str) -> None:
    """Refuse a declared content type that contradicts the sniffed one.

    ``application/octet-stream`` and an absent type declare nothing. Types of one
    family (:data:`_TYPE_FAMILIES`: ``image/jpg`` and ``image/jpeg``; ``image/heif``,
    ``image/heic`` and their ``-sequence`` types) do not contradict each other.

    Raises:
        InvalidInputError: the declared type names another family than ``actual``.
    """
    normalized = _media_type(declared or "")
    if normalized in _UNDECLARED_TYPES or type_family(normalized) == type_family(actual):
        return
    raise InvalidInputError(field_name, f"declared as {normalized!r} but the bytes are {actual!r}")


def type_family(content_type: str) -> str:
    """The format family of a media type (lower case, no parameters): ``image/heif``
    and ``image/heic-sequence`` are ``image/heic``, ``image/jpg`` is ``image/jpeg``; a
    type of no listed family is its own."""
    return _TYPE_FAMILIES.get(content_type, content_type)


#: Every family an accepted type belongs to: a declared type outside them is a 415.
_ACCEPTED_FAMILIES = frozenset(type_family(content_type) for content_type in FORMATS)


def sanitize_filename(raw: str | None, extension: str) -> str:
    """A filename safe to store and to put in ``Content-Disposition``.

    Drops any directory part (``/`` or ``\\``), control and format characters, and
    leading dots; appends ``.{extension}`` (the sniffed type's) unless the name already
    ends in an extension of that type, so a download never opens as another type
    (``page.html`` holding a PNG is saved as ``page.html.png``); keeps at most 255
    characters, extension included. Falls back to ``image.{extension}`` when nothing is
    left.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if not name:
        return f"image.{extension}"
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix.lower() not in _EXTENSION_SPELLINGS.get(extension, {extension}):
        stem, suffix = name, extension
    return stem[: MAX_FILENAME_CHARS - len(suffix) - 1].rstrip() + "." + suffix


# --- upload requests --------------------------------------------------------------------


def parse_upload(
    body: bytes,
    content_type: str,
    *,
    max_request_bytes: int,
    default_user_id: str | None = None,
) -> UploadRequest:
    """Parse and validate an upload in either form: multipart/form-data or JSON.

    Args:
        body: the raw request body.
        content_type: the request's ``Content-Type`` header.
        max_request_bytes: the most bytes the body may have (``Settings.max_request_bytes``,
            :data:`chalicelib.config.MAX_REQUEST_BYTES`: what API Gateway and Lambda can
            carry), checked before anything is parsed. The image's own limit
            (``MAX_IMAGE_BYTES``) is checked on the image, by ``imaging.probe``.
        default_user_id: the caller's identity from headers or auth, used when neither
            the body nor its ``metadata`` names a ``user_id``.

    Raises:
        PayloadTooLargeError: (field ``body``) more than ``max_request_bytes`` bytes;
            the message names ``POST /uploads``, the way to send larger images.
        InvalidInputError: see the field rules in the README.
    """
    if len(body) > max_request_bytes:
        raise PayloadTooLargeError(
            "body",
            f"the request is {len(body)} bytes; POST /images carries at most "
            f"{max_request_bytes} bytes (MAX_REQUEST_BYTES, what API Gateway and Lambda "
            "can carry); send larger images with POST /uploads",
        )
    if _media_type(content_type) == "multipart/form-data":
        return _upload_from_form(parse_multipart(body, content_type), default_user_id)
    return _upload_from_json(parse_json_object(body), default_user_id)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON request body that must be an object.

    Raises:
        InvalidInputError: (field ``body``) not UTF-8 JSON, nested too deeply to parse,
            or not an object.
    """
    document = _load_json("body", body or b"null")
    if not isinstance(document, dict):
        raise InvalidInputError("body", "must be a JSON object")
    return document


def _load_json(field_name: str, text: str | bytes) -> object:
    """``json.loads(text)``; every way it can fail is a 400 naming ``field_name``.

    Raises:
        InvalidInputError: not JSON (``ValueError``, which covers a bad encoding), or
            nested deeper than the parser's recursion limit (``RecursionError``).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInputError(field_name, "JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(field_name, f"not valid JSON ({exc})") from None


@dataclass
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """Split a multipart/form-data body into its parts with python-multipart.

    Linear in the body's size: at most :data:`MAX_FORM_PARTS` parts (parsing stops at
    the first one past it), python-multipart's own caps on header size and count.

    Raises:
        InvalidInputError: no boundary or one longer than :data:`MAX_BOUNDARY_CHARS`
            (field ``Content-Type``); a malformed body, a part without a name, or more
            than :data:`MAX_FORM_PARTS` parts (field ``body``).
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInputError("Content-Type", "multipart/form-data needs a boundary parameter")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise InvalidInputError(
            "Content-Type",
            f"the multipart boundary is {len(boundary)} characters, "
            f"at most {MAX_BOUNDARY_CHARS} allowed (RFC 2046)",
        )
    parts: list[FormPart] = []
    # Header values stay bytes until parsed: filenames are UTF-8 in practice (browsers,
    # curl), and python-multipart's parser reads bytes without re-encoding them.
    headers: dict[str, bytes] = {}
    header_name = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[header_name.decode("latin-1").lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get("content-disposition", b""))
        name = disposition.get(b"name")
        if name is None:
            raise InvalidInputError("body", "a multipart part has no name")
        if len(parts) >= MAX_FORM_PARTS:
            raise InvalidInputError(
                "body", f"more than {MAX_FORM_PARTS} multipart parts, at most {MAX_FORM_PARTS}"
            )
        filename = disposition.get(b"filename")
        content_type = headers.get("content-type")
        parts.append(
            FormPart(
                name=name.decode("utf-8", "replace"),
                filename=None if filename is None else filename.decode("utf-8", "replace"),
                content_type=None if content_type is None else content_type.decode("latin-1"),
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.extend(data[start:end])

    ended: list[bool] = []

    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_end": lambda: ended.append(True),
            },
        )
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        # Every error python-multipart raises on purpose (MultipartParseError, the
        # boundary's length, header size and count caps, ...) is a FormParserError.
        raise InvalidInputError("body", f"malformed multipart/form-data ({exc})") from None
    if not ended:  # finalize() accepts a body cut before its closing boundary
        raise InvalidInputError("body", "malformed multipart/form-data (no closing boundary)")
    return parts


def _upload_from_form(parts: Sequence[FormPart], default_user_id: str | None) -> UploadRequest:
    files = [p for p in parts if p.name in IMAGE_PARTS]
    if not files:
        raise InvalidInputError(
            "file", "missing: send the image as the form part 'file' (or 'image', 'image_data')"
        )
    if len(files) > 1:
        raise InvalidInputError("file", "send exactly one image per request")
    image = files[0]

    def text(name: str) -> list[str]:
        values = []
        for part in parts:
            if part.name == name:
                try:
                    values.append(part.data.decode("utf-8"))
                except UnicodeDecodeError:
                    raise InvalidInputError(name, "must be UTF-8 text") from None
        return values

    def single(name: str) -> str | None:
        values = text(name)
        if len(values) > 1:
            raise InvalidInputError(name, "given more than once")
        return values[0] if values else None

    metadata_text = single("metadata")
    metadata: object = None
    if metadata_text is not None and metadata_text.strip():
        metadata = _load_json("metadata", metadata_text)
        if not isinstance(metadata, dict):
            raise InvalidInputError("metadata", 'must be a JSON object, e.g. {"camera": "X100"}')
    tags = text("tags")
    fields = _RecordFields(
        {
            "user_id": single("user_id") or None,
            "title": single("title"),
            "description": single("description"),
            "tags": tags or None,
        },
        metadata,
    )
    return UploadRequest(
        data=bytes(image.data),
        image_field=image.name,
        filename=image.filename,
        declared_content_type=image.content_type,
        content_type_field=image.name,
        user_id=fields.user_id(default_user_id),
        title=fields.text("title", MAX_TITLE_CHARS),
        description=fields.text("description", MAX_DESCRIPTION_CHARS),
        tags=fields.tags(),
        metadata=validate_metadata(fields.metadata),
    )


class _RecordFields:
    """An upload's record fields, from the request or else from its ``metadata``.

    A common client shape sends ``user_id``, ``title``, ``description`` and ``tags``
    inside the ``metadata`` object (:data:`RECORD_FIELDS_IN_METADATA`). Those keys
    always leave ``metadata``; each is used when the request's own field is absent
    (None), and validated under the name ``metadata.<key>``.
    """

    def __init__(self, given: Mapping[str, object], metadata: object) -> None:
        self._given = given
        self._lifted: dict[str, object] = {}
        self.metadata = metadata
        if isinstance(metadata, dict):
            rest = dict(metadata)
            for name in RECORD_FIELDS_IN_METADATA:
                if name in rest:
                    self._lifted[name] = rest.pop(name)
            self.metadata = rest

    def _value(self, name: str) -> tuple[str, object]:
        """(the field name to report, the value) of ``name``: the request's, else metadata's."""
        value = self._given.get(name)
        if value is None and name in self._lifted:
            return f"metadata.{name}", self._lifted[name]
        return name, value

    def user_id(self, default: str | None) -> str:
        field_name, value = self._value("user_id")
        if value is None:
            field_name, value = "user_id", default
        return validate_user_id(value, field_name)

    def text(self, name: str, max_chars: int) -> str:
        return _text_field(*self._value(name), max_chars)

    def tags(self) -> list[str]:
        field_name, value = self._value("tags")
        return normalize_tags(value, field_name)


_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(;[^,]*)?;base64,", re.ASCII)


def _upload_from_json(document: Mapping[str, Any], default_user_id: str | None) -> UploadRequest:
    field_name = "image_base64" if "image_base64" in document else "image_data"
    encoded = document.get(field_name)
    if encoded is None:
        raise InvalidInputError("image_base64", "missing: send the image bytes base64-encoded")
    if not isinstance(encoded, str):
        raise InvalidInputError(field_name, "must be a base64 string")
    declared = _optional_str(document, "content_type")
    # A prefix, on purpose: the base64 data follows it.
    data_url = _DATA_URL.match(encoded)
    if data_url:
        encoded = encoded[data_url.end() :]
        declared = declared or data_url.group("type")
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(field_name, "is not valid base64") from None
    fields = _RecordFields(
        {name: document.get(name) for name in RECORD_FIELDS_IN_METADATA},
        document.get("metadata"),
    )
    return UploadRequest(
        data=data,
        image_field=field_name,
        filename=_optional_str(document, "filename"),
        declared_content_type=declared,
        content_type_field="content_type",
        user_id=fields.user_id(default_user_id),
        title=fields.text("title", MAX_TITLE_CHARS),
        description=fields.text("description", MAX_DESCRIPTION_CHARS),
        tags=fields.tags(),
        metadata=validate_metadata(fields.metadata),
    )


def _optional_str(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(name, "must be a string")
    return value


def _text_field(name: str, value: object, max_chars: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(name, "must be a string")
    _require_utf8(name, value)
    value = value.strip()
    if len(value) > max_chars:
        raise InvalidInputError(name, f"is {len(value)} characters, the limit is {max_chars}")
    return value


def _require_utf8(name: str, value: str) -> None:
    """JSON can spell lone surrogates (``"\\ud800"``), which no UTF-8 store accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(name, "contains a lone surrogate, not valid Unicode") from None


# --- field rules ------------------------------------------------------------------------


def validate_user_id(value: object, field_name: str = "user_id") -> str:
    """A user id: 1-128 characters of ``[A-Za-z0-9_.@-]``.

    Raises:
        InvalidInputError: missing, not a string, or outside the pattern.
    """
    if value is None or value == "":
        raise InvalidInputError(field_name, "missing: say who owns the image")
    if not isinstance(value, str) or not USER_ID_PATTERN.fullmatch(value):
        raise InvalidInputError(field_name, "must be 1-128 characters of A-Z a-z 0-9 _ . @ -")
    return value


def normalize_tags(value: object, field_name: str = "tags") -> list[str]:
    """Tags from a list or a comma-separated string: trimmed, lower-cased, de-duplicated.

    Each list element may itself be comma-separated (a repeated form field), and a
    string (or list element) that starts with ``[`` is a JSON array of such strings
    (``'["nature","vacation"]'``, as some clients send a form field). Empty entries
    (``"a,,b"``) are dropped. At most 10 tags remain, each 1-64 characters of
    ``[a-z0-9_-]``; order of first appearance is kept.

    Linear, and bounded: entries are read one at a time and reading stops at the first
    that breaks a rule, so a value with 80,000 tags costs what 11 do (beyond parsing the
    body that carried it).

    Raises:
        InvalidInputError: not a string or list of strings, a JSON array that is not one
            of strings, a tag outside the pattern, more than 10 tags, or more than
            :data:`MAX_TAG_ENTRIES` entries.
    """
    tags: dict[str, None] = {}  # an ordered set: membership is O(1)
    for entries, raw in enumerate(_tag_entries(value, field_name), start=1):
        if entries > MAX_TAG_ENTRIES:
            raise InvalidInputError(
                field_name,
                f"more than {MAX_TAG_ENTRIES} entries given, at most {MAX_TAGS} tags allowed",
            )
        tag = raw.strip().lower()
        if not tag:
            continue
        if not TAG_PATTERN.fullmatch(tag):
            raise InvalidInputError(
                field_name, f"tag {tag[:80]!r} must be 1-64 characters of a-z 0-9 _ -"
            )
        tags[tag] = None
        if len(tags) > MAX_TAGS:
            raise InvalidInputError(
                field_name, f"more than {MAX_TAGS} tags given, at most {MAX_TAGS} allowed"
            )
    return list(tags)


def _tag_entries(value: object, field_name: str) -> Iterator[str]:
    """The raw entries of a ``tags`` value, lazily: list elements, JSON array elements
    and comma-separated pieces, in order (see :func:`normalize_tags`).

    Raises:
        InvalidInputError: ``value`` is not a string or a list of strings, or a JSON
            array in it is malformed or holds anything but strings.
    """
    if value is None:
        return
    if isinstance(value, str):
        chunks: Iterable[object] = (value,)
    elif isinstance(value, list):
        chunks = value
    else:
        raise InvalidInputError(field_name, "must be a list of strings or a comma-separated string")
    for chunk in chunks:
        if not isinstance(chunk, str):
            raise InvalidInputError(field_name, "every tag must be a string")
        if not chunk.lstrip().startswith("["):
            yield from _comma_separated(chunk)
            continue
        array = _load_json(field_name, chunk)
        if not isinstance(array, list):
            raise InvalidInputError(field_name, "a JSON array of tags must be a list of strings")
        for element in array:
            if not isinstance(element, str):
                raise InvalidInputError(field_name, "every tag must be a string")
            yield from _comma_separated(element)


def _comma_separated(text: str) -> Iterator[str]:
    """The pieces of ``text`` between commas, lazily (``str.split`` would build every one
    of a 4 MB field's pieces before the first could be refused)."""
    start = 0
    while (end := text.find(",", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


def validate_metadata(value: object) -> dict[str, str]:
    """Free-form metadata: an object of at most 20 string values (e.g. caption, camera).

    Keys are 1-64 characters of ``[A-Za-z0-9_.-]``; values at most 1024 characters.

    Raises:
        InvalidInputError: naming ``metadata`` or ``metadata.<key>``.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError("metadata", "must be an object of string values")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidInputError(
            "metadata", f"{len(value)} keys given, at most {MAX_METADATA_KEYS} allowed"
        )
    for key, item in value.items():
        if not METADATA_KEY_PATTERN.fullmatch(key):
            raise InvalidInputError(
                "metadata", f"key {key[:80]!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        if not isinstance(item, str):
            raise InvalidInputError(f"metadata.{key}", "must be a string")
        _require_utf8(f"metadata.{key}", item)
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise InvalidInputError(
                f"metadata.{key}",
                f"is {len(item)} characters, the limit is {MAX_METADATA_VALUE_CHARS}",
            )
    return dict(value)


# --- query strings ----------------------------------------------------------------------

_LIST_PARAMETERS = {
    "user_id",
    "tag",
    "tags",
    "date_from",
    "date_to",
    "date_range",
    "title",
    "limit",
    "next_token",
}
_VIEW_PARAMETERS = {"expires_in", "download", "metadata_only"}


def parse_list_query(params: Mapping[str, Sequence[str]]) -> ListQuery:
    """Validate ``GET /images`` query parameters (``params`` maps a name to its values).

    Raises:
        InvalidInputError: an unknown parameter, a repeated one, or a bad value.
    """
    single = _single_values(params, _LIST_PARAMETERS)
    tags = normalize_tags(single.get("tag"), "tag")
    tags += [tag for tag in normalize_tags(single.get("tags"), "tags") if tag not in tags]
    if len(tags) > MAX_TAGS:
        raise InvalidInputError("tags", f"{len(tags)} tags given, at most {MAX_TAGS} allowed")
    date_from, date_to = single.get("date_from"), single.get("date_to")
    if "date_range" in single:
        if date_from is not None or date_to is not None:
            raise InvalidInputError("date_range", "use either date_range or date_from/date_to")
        pieces = single["date_range"].split(",")
        if len(pieces) != 2:
            raise InvalidInputError("date_range", "must be FROM,TO (either side may be empty)")
        date_from, date_to = (piece.strip() or None for piece in pieces)
    created_from = _timestamp_bound("date_from", date_from, end_of_day=False)
    created_to = _timestamp_bound("date_to", date_to, end_of_day=True)
    if created_from and created_to and created_from > created_to:
        raise InvalidInputError("date_from", "is after date_to")
    user_id = single.get("user_id")
    title = single.get("title")
    if title is not None and len(title) > MAX_TITLE_CHARS:
        raise InvalidInputError("title", f"is longer than {MAX_TITLE_CHARS} characters")
    return ListQuery(
        user_id=None if user_id is None else validate_user_id(user_id),
        tags=tuple(tags),
        created_from=created_from,
        created_to=created_to,
        title=fold_text(title.strip()) or None if title is not None else None,
        limit=_bounded_int("limit", single.get("limit"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        next_token=single.get("next_token") or None,
    )


def parse_view_options(params: Mapping[str, Sequence[str]], default_expires: int) -> ViewOptions:
    """Validate ``GET /images/{id}`` query parameters.

    ``expires_in`` is 60-3600 seconds (default ``default_expires``, clamped into that
    range); ``download`` and ``metadata_only`` take true/false/1/0/yes/no.

    Raises:
        InvalidInputError: an unknown parameter or a bad value.
    """
    single = _single_values(params, _VIEW_PARAMETERS)
    default = min(max(default_expires, MIN_URL_EXPIRES), MAX_URL_EXPIRES)
    return ViewOptions(
        expires_in=_bounded_int(
            "expires_in", single.get("expires_in"), default, MIN_URL_EXPIRES, MAX_URL_EXPIRES
        ),
        download=_flag("download", single.get("download")),
        metadata_only=_flag("metadata_only", single.get("metadata_only")),
    )


def _single_values(params: Mapping[str, Sequence[str]], allowed: set[str]) -> dict[str, str]:
    """One value per parameter; stops at the first unknown or repeated one (O(1) per
    parameter, so a query string of many parameters costs no more than its length)."""
    values: dict[str, str] = {}
    for name, given in params.items():
        if name not in allowed:
            raise InvalidInputError(
                name, f"unknown query parameter; allowed: {', '.join(sorted(allowed))}"
            )
        if len(given) > 1:
            raise InvalidInputError(name, "given more than once")
        if given:
            values[name] = given[0]
    return values


#: An integer query parameter's only spelling: ASCII digits, no sign, no spaces, no
#: leading zero (``int()`` and ``str.isdigit`` also take ``" 5"``, ``"+5"``, ``"5_0"``
#: and other scripts' digits such as ``"٣"``). At most 9 digits: bounded work, and no
#: parameter's range comes near.
_ASCII_INTEGER = re.compile(r"0|[1-9][0-9]{0,8}")


def _bounded_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer from ``low`` to ``high``, ``default`` when
    absent: every integer parameter goes through here.

    Raises:
        InvalidInputError: not in :data:`_ASCII_INTEGER`'s spelling, or out of range.
    """
    if raw is None:
        return default
    if not _ASCII_INTEGER.fullmatch(raw):
        raise InvalidInputError(
            name,
            f"must be an integer from {low} to {high} in ASCII digits "
            "(no sign, spaces or leading zeros)",
        )
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInputError(name, f"must be an integer from {low} to {high}, got {value}")
    return value


def fold_text(text: str) -> str:
    """``text`` as the title search compares it: NFKC, Unicode case folding, a dot
    above an ``i`` dropped, NFKC again.

    So ``GRÖSSE`` and ``größe`` fold alike (``grösse``), fullwidth ``\uff21`` is ``a``,
    the ligature ``ﬁ`` is ``fi``. Case folding turns the Turkish capital ``İ`` into ``i``
    plus U+0307 (combining dot above); the dot on an ``i`` adds nothing visible, so it
    is dropped and ``istanbul`` finds ``İstanbul`` (the dotless ``\u0131`` stays a letter of
    its own). Accents are kept: ``cafe`` does not find ``café``. Linear in ``text``
    (NFKC expands a character at most 18-fold).
    """
    folded = unicodedata.normalize("NFKC", text).casefold().replace("i\u0307", "i")
    return unicodedata.normalize("NFKC", folded)


def _flag(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise InvalidInputError(name, "must be true or false")


def _timestamp_bound(name: str, raw: str | None, end_of_day: bool) -> str | None:
    """An inclusive bound in ``created_at`` format from an ISO date or datetime."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min, UTC)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return format_timestamp(moment)
    except (ValueError, OverflowError):
        raise InvalidInputError(
            name, "must be an ISO date (2026-11-21) or datetime (2026-11-21T10:30:00Z)"
        ) from None


def format_timestamp(moment: datetime) -> str:
    """``moment`` as stored: ISO 8601 UTC, millisecond precision, ``Z`` suffix.

    Raises:
        OverflowError: ``moment`` in UTC falls outside years 1-9999.
    """
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(stored: str) -> datetime:
    """The timezone-aware moment of a timestamp :func:`format_timestamp` wrote."""
    return datetime.fromisoformat(stored.replace("Z", "+00:00"))


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# --- direct uploads ---------------------------------------------------------------------

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class UploadStart:
    """A validated ``POST /uploads`` body: the image's fields, no bytes yet.

    ``declared_content_type`` is the client's claim (None: none), ``size_bytes`` the
    declared size in bytes (None: any size up to ``MAX_IMAGE_BYTES``), ``sha256`` the
    lower-case hex digest the bytes must have (None: not checked).
    """

    user_id: str
    title: str
    description: str
    tags: list[str]
    metadata: dict[str, str]
    filename: str | None
    declared_content_type: str | None
    size_bytes: int | None
    sha256: str | None


def parse_upload_start(
    body: bytes, max_bytes: int, default_user_id: str | None = None
) -> UploadStart:
    """Parse and validate the JSON body of ``POST /uploads``.

    Args:
        body: the raw request body (a JSON object; empty means ``{}``).
        max_bytes: ``MAX_IMAGE_BYTES``; a declared ``size_bytes`` above it is a 413.
        default_user_id: the caller's identity, used when the body names no ``user_id``.

    Raises:
        InvalidInputError: a field breaks its rule (the same rules and request shapes
            as the JSON form of ``POST /images``, record fields in ``metadata`` included);
            ``size_bytes`` not a positive integer, ``sha256`` not 64 hex digits,
            ``content_type`` not an accepted image type.
        PayloadTooLargeError: ``size_bytes`` is over ``max_bytes``.
    """
    document = parse_json_object(body) if body.strip() else {}
    for name in ("image_base64", "image_data"):
        if name in document:
            raise InvalidInputError(
                name, "POST /uploads takes no bytes: post them to the returned upload.url"
            )
    declared = _optional_str(document, "content_type")
    if declared is not None:
        _require_utf8("content_type", declared)
        normalized = _media_type(declared)
        if (
            normalized not in _UNDECLARED_TYPES
            and type_family(normalized) not in _ACCEPTED_FAMILIES
        ):
            raise UnsupportedImageError(
                "content_type", f"{declared[:80]!r} is not an accepted type"
            )
        # Kept as its media type only: parameters (";...") say nothing about the bytes.
        declared = normalized
    size = document.get("size_bytes")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInputError("size_bytes", "must be a positive integer (bytes)")
        if size > max_bytes:
            raise PayloadTooLargeError(
                "size_bytes", f"is {size} bytes, the limit is {max_bytes} bytes"
            )
    digest = _optional_str(document, "sha256")
    if digest is not None:
        digest = digest.strip().lower()
        if not _SHA256_HEX.fullmatch(digest):
            raise InvalidInputError("sha256", "must be the 64 hex digits of a SHA-256 digest")
    filename = _optional_str(document, "filename")
    if filename is not None:
        _require_utf8("filename", filename)
        # What is stored is cut to 255 characters anyway (sanitize_filename, once the
        # bytes' type is known); the upload item keeps no more than could matter.
        filename = filename[-4 * MAX_FILENAME_CHARS :]
    fields = _RecordFields(
        {name: document.get(name) for name in RECORD_FIELDS_IN_METADATA},
        document.get("metadata"),
    )
    return UploadStart(
        user_id=fields.user_id(default_user_id),
        title=fields.text("title", MAX_TITLE_CHARS),
        description=fields.text("description", MAX_DESCRIPTION_CHARS),
        tags=fields.tags(),
        metadata=validate_metadata(fields.metadata),
        filename=filename,
        declared_content_type=declared,
        size_bytes=size,
        sha256=digest,
    )


# --- edits ------------------------------------------------------------------------------

#: The fields ``PATCH /images/{image_id}`` may change.
EDITABLE_FIELDS = ("title", "description", "tags", "metadata")
#: Record fields a PATCH names only to be told they are not editable (anything else it
#: names is an unknown field).
READ_ONLY_FIELDS = frozenset(
    {
        "image_id",
        "user_id",
        "created_at",
        "updated_at",
        "version",
        "filename",
        "content_type",
        "size_bytes",
        "width",
        "height",
        "sha256",
        "s3_key",
        "frames",
        "taken_at",
        "placeholder",
        "dominant_color",
        "renditions",
    }
)


@dataclass(frozen=True)
class ImagePatch:
    """A validated ``PATCH /images/{image_id}`` body: each field is the new value, or
    None when the body left it unchanged.

    ``tags`` replaces the list (normalised as for an upload); ``metadata`` replaces the
    object (``{}`` when the body sent ``null``: removed).
    """

    title: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, str] | None = None


def parse_image_patch(body: bytes) -> ImagePatch:
    """Parse and validate the JSON body of ``PATCH /images/{image_id}``: any of
    :data:`EDITABLE_FIELDS`, each validated as for an upload (``title`` and
    ``description`` may be ``null``, which empties them; ``metadata: null`` removes it).

    Raises:
        InvalidInputError: naming ``body`` (not a JSON object, or none of the editable
            fields), a field of :data:`READ_ONLY_FIELDS` ("not editable"), any other
            unknown field, or the field whose value breaks its upload rule
            (``metadata.<key>`` for a value; a record field inside ``metadata`` is
            refused: edit it as the field itself).
    """
    document = parse_json_object(body) if body.strip() else {}
    for name in document:
        if name in READ_ONLY_FIELDS:
            raise InvalidInputError(name, "not editable")
        if name not in EDITABLE_FIELDS:
            raise InvalidInputError(
                name[:80], f"unknown field; editable: {', '.join(EDITABLE_FIELDS)}"
            )
    if not document:
        raise InvalidInputError(
            "body", f"nothing to change: send any of {', '.join(EDITABLE_FIELDS)}"
        )
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        for name in RECORD_FIELDS_IN_METADATA:
            if name in metadata:
                raise InvalidInputError(
                    f"metadata.{name}", f"a record field: edit it as {name!r} itself"
                )
    return ImagePatch(
        title=_text_field("title", document["title"], MAX_TITLE_CHARS)
        if "title" in document
        else None,
        description=_text_field("description", document["description"], MAX_DESCRIPTION_CHARS)
        if "description" in document
        else None,
        tags=normalize_tags(document["tags"]) if "tags" in document else None,
        metadata=validate_metadata(metadata) if "metadata" in document else None,
    )


@dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match`` header: ``any`` for ``*``, else the strong entity tags'
    opaque values (``"3"`` gives ``"3"``; weak tags ``W/"3"`` never match, RFC 9110
    13.1.1)."""

    any: bool = False
    tags: frozenset[str] = frozenset()

    def matches(self, version: int) -> bool:
        """Whether the image at ``version`` passes the precondition."""
        return self.any or str(version) in self.tags


#: One element of an entity-tag list (RFC 9110 8.8.3): optional ``W/``, then a quoted
#: opaque tag, then a comma or the end.
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\U0010ffff]*)"[ \t]*(?:,|\Z)')
_LIST_GAP = re.compile(r"[ \t]*,")


def entity_tag(version: int) -> str:
    """The strong ``ETag`` of an image at ``version`` (``"3"``, quotes included)."""
    return f'"{version}"'


def parse_if_match(header: str | None) -> IfMatch | None:
    """Parse an ``If-Match`` header: ``*`` or a comma-separated list of entity tags.

    Linear in the header's length (each step consumes what it matched).

    Returns:
        None when the header is absent or blank (no precondition).

    Raises:
        InvalidInputError: (field ``If-Match``) not ``*`` nor a list of quoted tags.
    """
    if header is None or not header.strip():
        return None
    if header.strip() == "*":
        return IfMatch(any=True)
    tags: set[str] = set()
    position = 0
    while position < len(header):
        gap = _LIST_GAP.match(header, position)
        if gap:
            position = gap.end()
            continue
        element = _ENTITY_TAG.match(header, position)
        if element is None:
            if not header[position:].strip():
                break
            raise InvalidInputError(
                "If-Match", 'must be * or entity tags in double quotes, e.g. "3"'
            )
        if element.group(1) is None:
            tags.add(element.group(2))
        position = element.end()
    return IfMatch(tags=frozenset(tags))
