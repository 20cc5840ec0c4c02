"""What a black-box probe found beyond the image pipeline (issue 15), and its variants:
integer query parameters in ASCII digits only, title search under Unicode case folding
and NFKC, and the HEIF family in the declared-type check.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from chalice.test import Client
from PIL import Image

from chalicelib.errors import InvalidInputError
from chalicelib.metadata import TITLE_FOLDED
from chalicelib.validation import check_declared_type, fold_text
from tests.unit.conftest import TABLE, FixedClock, post_json, upload
from tests.unit.uploading import complete, post_bytes, start_upload

pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")

# --- integer query parameters: ASCII digits only -----------------------------------------

#: Spellings Python's ``int()`` (or ``str.isdigit``) takes that are not an integer
#: parameter's: other scripts' digits, signs, spaces, separators, exponents, leading zeros.
NOT_ASCII_INTEGERS = [
    " 5",  # limit=%205
    "5 ",
    "\t5",
    "5\n",
    "+5",
    "-5",
    "05",
    "007",
    "5_0",
    "1e1",
    "5.0",
    "0x10",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\u0666\u0660",  # sixty in Arabic-Indic digits
    "\u06f5",  # EXTENDED ARABIC-INDIC DIGIT FIVE
    "\u0967\u0966",  # ten in DEVANAGARI digits
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "\U0001d7d3",  # MATHEMATICAL BOLD DIGIT FIVE
    "\u00b2",  # SUPERSCRIPT TWO (isdigit() is True)
    "",
    "9" * 5000,
]


@pytest.mark.parametrize("raw", NOT_ASCII_INTEGERS, ids=repr)
@pytest.mark.parametrize(("path", "name"), [("/images?limit=", "limit")], ids=["limit"])
def test_limit_takes_ascii_digits_only(client: Client, path: str, name: str, raw: str) -> None:
    response = client.http.get(path + quote(raw, safe=""))

    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith(f"{name}: must be an integer from 1 to 100")


@pytest.mark.parametrize("raw", NOT_ASCII_INTEGERS, ids=repr)
def test_expires_in_takes_ascii_digits_only(client: Client, raw: str) -> None:
    image_id = upload(client)["image_id"]

    response = client.http.get(f"/images/{image_id}?expires_in={quote(raw, safe='')}")

    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith("expires_in: must be an integer from 60")


@pytest.mark.parametrize(("raw", "count"), [("1", 1), ("2", 2), ("100", 2)])
def test_plain_ascii_integers_are_accepted(client: Client, raw: str, count: int) -> None:
    upload(client)
    upload(client)

    response = client.http.get(f"/images?limit={raw}")

    assert response.status_code == 200, response.body
    assert response.json_body["count"] == count


def test_expires_in_in_ascii_digits_is_accepted(client: Client) -> None:
    image_id = upload(client)["image_id"]

    response = client.http.get(f"/images/{image_id}?expires_in=60")

    assert response.status_code == 200, response.body
    # At least what was asked, at most one cache window more (the URL is the window's).
    assert 60 <= response.json_body["expires_in"] <= 60 + 3600


# --- title search: NFKC and Unicode case folding -----------------------------------------

TITLES = [
    "Größe",
    "İstanbul",
    "ﬁle",
    "\uff34\uff4f\uff4b\uff59\uff4f",
    "Café",
    "\u0131spanak",
    "Plain",
]


@pytest.fixture
def titled(client: Client, clock: FixedClock) -> None:
    for number, title in enumerate(TITLES):
        clock.now = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=number)
        upload(client, title=title, tags=["t"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("GRÖSSE", ["Größe"]),
        ("grösse", ["Größe"]),
        ("ß", ["Größe"]),  # folds to ss
        ("istanbul", ["İstanbul"]),
        ("İSTANBUL", ["İstanbul"]),
        ("ISTANBUL", ["İstanbul"]),
        ("FILE", ["ﬁle"]),  # the ligature is NFKC "fi"
        ("tokyo", ["\uff34\uff4f\uff4b\uff59\uff4f"]),  # fullwidth letters are NFKC ASCII
        ("\uff34\uff2f\uff2b\uff39\uff2f", ["\uff34\uff4f\uff4b\uff59\uff4f"]),
        ("CAFÉ", ["Café"]),
        ("Cafe\u0301", ["Café"]),  # decomposed é is NFKC é
        ("cafe", []),  # accents are kept
        ("\u0131spanak", ["\u0131spanak"]),  # dotless i is its own letter
        ("ispanak", []),
    ],
)
def test_title_search_folds_case_and_compatibility_forms(
    client: Client, titled: None, query: str, expected: list[str]
) -> None:
    for extra in ("", "&user_id=alice", "&tag=t"):  # the feed, GSI1, a tag partition
        response = client.http.get(f"/images?title={quote(query)}{extra}")
        assert response.status_code == 200, response.body
        assert [item["title"] for item in response.json_body["items"]] == expected, extra


def test_items_store_the_folded_title(client: Client) -> None:
    record = upload(client, title="GRÖSSE İstanbul", tags=["a", "b"])

    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    mine = [item for item in items if item.get("image_id", {}).get("S") == record["image_id"]]
    assert len(mine) == 4  # the image, two tags, one pair
    assert {item[TITLE_FOLDED]["S"] for item in mine} == {"grösse istanbul"}
    assert "title_lower" not in mine[0]


def test_items_written_before_the_folded_title_are_folded_on_read(
    client: Client, clock: FixedClock
) -> None:
    """No migration: an item without ``title_folded`` (written before it existed) is
    still found, and a page of them stays full."""
    for number in range(5):
        clock.now = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=number)
        upload(client, title=f"Größe {number}" if number % 2 else f"Other {number}")
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=TABLE)["Items"]:
        if TITLE_FOLDED in item:  # as written before: the lower-cased title only
            del item[TITLE_FOLDED]
            item["title_lower"] = {"S": item["title"]["S"].lower()}
            dynamodb.put_item(TableName=TABLE, Item=item)

    response = client.http.get(f"/images?title={quote('GRÖSSE')}&limit=1")

    body = response.json_body
    assert [item["title"] for item in body["items"]] == ["Größe 3"]
    assert body["next_token"] is not None
    following = client.http.get(
        f"/images?title={quote('GRÖSSE')}&limit=1&next_token={body['next_token']}"
    ).json_body
    assert [item["title"] for item in following["items"]] == ["Größe 1"]
    assert following["next_token"] is None


def test_fold_text_is_nfkc_of_the_case_fold() -> None:
    assert fold_text("GRÖSSE") == fold_text("Größe") == "grösse"
    assert fold_text("İstanbul") == "istanbul"
    assert fold_text("\uff33\uff54\uff52\uff41ß\uff45") == "strasse"
    assert fold_text("\u212b") == "å"  # ANGSTROM SIGN
    # Linear: NFKC's largest expansion, many times over, stays proportional.
    assert len(fold_text("\ufdfa" * 200)) == 18 * 200


# --- the HEIF family in the declared-type check ------------------------------------------


def heic_bytes() -> bytes:
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), "teal").save(buffer, "HEIF")
    return buffer.getvalue()


HEIF_FAMILY = ["image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"]


@pytest.mark.parametrize("declared", HEIF_FAMILY)
@pytest.mark.parametrize("actual", ["image/heic", "image/heif"])
def test_heif_family_types_do_not_contradict_each_other(declared: str, actual: str) -> None:
    check_declared_type(declared, actual, "content_type")
    check_declared_type(declared.upper() + "; charset=binary", actual, "content_type")


@pytest.mark.parametrize(
    ("declared", "actual"),
    [
        ("image/avif", "image/heic"),
        ("image/heif", "image/avif"),
        ("image/heic", "image/jpeg"),
        ("image/jpeg", "image/heif"),
        ("image/png", "image/jpeg"),
    ],
)
def test_other_families_still_contradict(declared: str, actual: str) -> None:
    with pytest.raises(InvalidInputError, match=f"content_type: declared as '{declared}'"):
        check_declared_type(declared, actual, "content_type")


@pytest.mark.parametrize("declared", HEIF_FAMILY)
def test_post_images_accepts_a_heic_declared_as_any_heif_type(
    client: Client, declared: str
) -> None:
    body = {
        "image_base64": base64.b64encode(heic_bytes()).decode(),
        "filename": "IMG_0001.HEIC",
        "content_type": declared,
        "user_id": "alice",
    }
    response = post_json(client, body)

    assert response.status_code == 201, response.body
    assert response.json_body["content_type"] == "image/heic"


def test_post_images_refuses_a_heic_declared_as_avif(client: Client) -> None:
    body = {
        "image_base64": base64.b64encode(heic_bytes()).decode(),
        "content_type": "image/avif",
        "user_id": "alice",
    }
    response = post_json(client, body)

    assert response.status_code == 400, response.body
    assert response.json_body["Message"] == (
        "content_type: declared as 'image/avif' but the bytes are 'image/heic'"
    )


@pytest.fixture
def near_now(clock: FixedClock) -> FixedClock:
    """Direct uploads: S3's Last-Modified is the real time, before the expiry."""
    clock.now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    return clock


@pytest.mark.parametrize("declared", HEIF_FAMILY)
def test_a_direct_upload_of_a_heic_declared_as_any_heif_type_completes(
    client: Client, near_now: FixedClock, declared: str
) -> None:
    started: dict[str, Any] = start_upload(client, content_type=declared)
    post_bytes(started, heic_bytes())

    response = complete(client, started["upload_id"])

    assert response.status_code == 201, response.body
    assert response.json_body["content_type"] == "image/heic"
