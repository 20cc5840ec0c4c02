"""No list-shaped input costs more than its limit (issue 9, "Input that costs too much").

Tag normalisation used to be quadratic: 80,000 tags took 27 s of CPU before their 400.
These tests count the work each refusal does instead of timing it: how many tags are
checked against the pattern, how many multipart parts are built, how many query
parameters are read. Each must stay at the limit (plus the one entry that breaks it),
whatever the input's size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from chalicelib import validation
from chalicelib.errors import InvalidInputError
from tests.unit.conftest import image_bytes

MANY = 80_000
TAGS = [f"t{i}" for i in range(MANY)]


class CountingPattern:
    """A compiled pattern that counts every match it is asked for."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._pattern = pattern
        self.pattern = pattern.pattern
        self.calls = 0

    def fullmatch(self, text: str) -> re.Match[str] | None:
        self.calls += 1
        return self._pattern.fullmatch(text)

    def match(self, text: str) -> re.Match[str] | None:  # what the quadratic code used
        self.calls += 1
        return self._pattern.match(text)


@pytest.fixture
def tag_checks(monkeypatch: pytest.MonkeyPatch) -> CountingPattern:
    counting = CountingPattern(validation.TAG_PATTERN)
    monkeypatch.setattr(validation, "TAG_PATTERN", counting)
    return counting


def multipart(parts: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """A multipart body with a PNG ``file`` and ``parts`` as fields, written compactly."""
    chunks = [b"--b\r\nContent-Disposition:form-data;name=file;filename=a.png\r\n\r\n"]
    chunks[0] += image_bytes() + b"\r\n"
    chunks += [
        f"--b\r\nContent-Disposition:form-data;name={n}\r\n\r\n{v}\r\n".encode() for n, v in parts
    ]
    return b"".join(chunks) + b"--b--\r\n", "multipart/form-data; boundary=b"


TAG_FORMS = {
    "json-list": TAGS,
    "comma-separated": ",".join(TAGS),
    "json-array-as-text": json.dumps(TAGS),
    "list-of-comma-separated": [",".join(TAGS[i : i + 1000]) for i in range(0, MANY, 1000)],
}


@pytest.mark.parametrize("value", TAG_FORMS.values(), ids=TAG_FORMS.keys())
def test_80000_tags_are_refused_after_checking_eleven(
    tag_checks: CountingPattern, value: object
) -> None:
    with pytest.raises(InvalidInputError, match=r"^tags: more than 10 tags given"):
        validation.normalize_tags(value)
    assert tag_checks.calls == validation.MAX_TAGS + 1


def test_80000_copies_of_one_tag_are_refused_at_the_entry_limit(
    tag_checks: CountingPattern,
) -> None:
    with pytest.raises(InvalidInputError, match=r"^tags: more than 100 entries given"):
        validation.normalize_tags(",".join(["cat"] * MANY))
    assert tag_checks.calls == validation.MAX_TAG_ENTRIES


def test_80000_empty_entries_are_refused_at_the_entry_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pieces = 0
    split = validation._comma_separated

    def counting(text: str) -> Iterator[str]:
        nonlocal pieces
        for piece in split(text):
            pieces += 1
            yield piece

    monkeypatch.setattr(validation, "_comma_separated", counting)
    with pytest.raises(InvalidInputError, match=r"^tags: more than 100 entries given"):
        validation.normalize_tags("," * MANY)
    assert pieces == validation.MAX_TAG_ENTRIES + 1


def test_80000_tags_in_the_query_are_refused_after_checking_eleven(
    tag_checks: CountingPattern,
) -> None:
    with pytest.raises(InvalidInputError, match=r"^tags: more than 10 tags given"):
        validation.parse_list_query({"tags": [",".join(TAGS)]})
    assert tag_checks.calls == validation.MAX_TAGS + 1


@pytest.mark.parametrize("form", ["repeated-fields", "one-field"])
def test_80000_tags_in_a_multipart_body_are_refused_at_a_limit(
    monkeypatch: pytest.MonkeyPatch, tag_checks: CountingPattern, form: str
) -> None:
    built = 0
    part = validation.FormPart

    def counting_part(*args: Any, **kwargs: Any) -> validation.FormPart:
        nonlocal built
        built += 1
        return part(*args, **kwargs)

    monkeypatch.setattr(validation, "FormPart", counting_part)
    fields = (
        [("tags", tag) for tag in TAGS] if form == "repeated-fields" else [("tags", ",".join(TAGS))]
    )
    body, content_type = multipart([("user_id", "alice"), *fields])
    with pytest.raises(InvalidInputError) as refused:
        validation.parse_upload(body, content_type, max_request_bytes=len(body))
    if form == "repeated-fields":
        assert str(refused.value).startswith("body: more than 128 multipart parts")
        assert built == validation.MAX_FORM_PARTS
    else:
        assert str(refused.value).startswith("tags: more than 10 tags given")
        assert built == 3
        assert tag_checks.calls == validation.MAX_TAGS + 1


def test_80000_metadata_keys_are_refused_without_checking_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingPattern(validation.METADATA_KEY_PATTERN)
    monkeypatch.setattr(validation, "METADATA_KEY_PATTERN", counting)
    with pytest.raises(InvalidInputError, match=r"^metadata: 80000 keys given"):
        validation.validate_metadata({f"k{i}": "v" for i in range(MANY)})
    assert counting.calls == 0


class CountingParams(Mapping[str, Sequence[str]]):
    """Query parameters that count how many of them are read."""

    def __init__(self, params: dict[str, list[str]]) -> None:
        self._params = params
        self.read = 0

    def __getitem__(self, name: str) -> Sequence[str]:
        self.read += 1
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        for name in self._params:
            self.read += 1
            yield name

    def __len__(self) -> int:
        return len(self._params)


QUERIES = {
    "unknown-first": {f"p{i}": ["1"] for i in range(MANY)},
    "repeated-first": {"limit": ["1", "2"], **{f"p{i}": ["1"] for i in range(MANY)}},
}


@pytest.mark.parametrize("given", QUERIES.values(), ids=QUERIES.keys())
def test_80000_query_parameters_are_refused_at_the_first_bad_one(
    given: dict[str, list[str]],
) -> None:
    params = CountingParams(given)
    with pytest.raises(InvalidInputError):
        validation.parse_list_query(params)
    assert params.read <= 2


def test_long_inputs_cost_linear_time_in_patterns() -> None:
    # One 4 MB tag, user_id and metadata key: each pattern gives up after its bound.
    huge = "a" * 4_000_000
    with pytest.raises(InvalidInputError, match=r"^tags: tag 'a{78}"):
        validation.normalize_tags(huge)
    with pytest.raises(InvalidInputError, match=r"^user_id: must be"):
        validation.validate_user_id(huge)
    with pytest.raises(InvalidInputError, match=r"^metadata: key"):
        validation.validate_metadata({huge: "v"})
