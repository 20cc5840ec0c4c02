"""Headers every response carries, and the ``/download`` redirect's body (issue 9).

``X-Content-Type-Options: nosniff`` is added once, by the app's HTTP middleware, so it is
on every route's responses, those of routes added later, the errors of the domain
(400-503), Chalice's own (405, 415) and the 500 of an unhandled exception.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.service import ImageService
from tests.unit.conftest import image_bytes, post_json, upload

NOSNIFF = ("X-Content-Type-Options", "nosniff")


def header(response: Any, name: str) -> str | None:
    value: str | None = {k.lower(): v for k, v in response.headers.items()}.get(name.lower())
    return value


@pytest.fixture
def image_id(client: Client) -> str:
    image_id: str = upload(client)["image_id"]
    return image_id


REQUESTS = {
    "upload-201": lambda c, i: post_json(
        c, {"image_base64": base64.b64encode(image_bytes()).decode(), "user_id": "alice"}
    ),
    "upload-400": lambda c, i: c.http.post(
        "/images", headers={"Content-Type": "application/json"}, body="{}"
    ),
    "list-200": lambda c, i: c.http.get("/images"),
    "view-200": lambda c, i: c.http.get(f"/images/{i}"),
    "download-302": lambda c, i: c.http.get(f"/images/{i}/download"),
    "health-200": lambda c, i: c.http.get("/health"),
    "openapi-200": lambda c, i: c.http.get("/openapi.json"),
    "bad-request-400": lambda c, i: c.http.get("/images?limit=0"),
    "no-identity-401": lambda c, i: c.http.delete(f"/images/{i}"),
    "not-owner-403": lambda c, i: c.http.delete(f"/images/{i}", headers={"X-User-Id": "bob"}),
    "not-found-404": lambda c, i: c.http.get("/images/7f1c1f5e-0000-4000-8000-000000000000"),
    "method-405": lambda c, i: c.http.put("/health"),
    "media-type-415": lambda c, i: c.http.post(
        "/images", headers={"Content-Type": "text/plain"}, body="x"
    ),
    "delete-200": lambda c, i: c.http.delete(f"/images/{i}", headers={"X-User-Id": "alice"}),
}


def request_id(send: Any) -> str:
    return next(name for name, value in REQUESTS.items() if value is send)


@pytest.mark.parametrize("send", REQUESTS.values(), ids=REQUESTS.keys())
def test_every_response_says_nosniff(client: Client, image_id: str, send: Any) -> None:
    response = send(client, image_id)
    assert response.status_code == int(request_id(send).rsplit("-", 1)[1]), response.body
    assert header(response, NOSNIFF[0]) == NOSNIFF[1], (response.status_code, response.headers)


def test_an_unhandled_exception_500_says_nosniff(
    client: Client, service: ImageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "list_images", broken)
    response = client.http.get("/images")
    assert response.status_code == 500
    assert header(response, NOSNIFF[0]) == NOSNIFF[1]


@pytest.fixture
def added_route() -> Iterator[str]:
    """A route registered after the app was built, as later features add theirs."""
    path = "/issue9-probe"

    @app_module.route(path, methods=["GET"])
    def probe() -> dict[str, str]:
        return {"probe": "ok"}

    yield path
    del app_module.app.routes[path]


def test_a_route_added_later_says_nosniff(client: Client, added_route: str) -> None:
    response = client.http.get(added_route)
    assert response.status_code == 200
    assert header(response, NOSNIFF[0]) == NOSNIFF[1]


def test_download_302_is_plain_text_with_a_short_body(client: Client, image_id: str) -> None:
    response = client.http.get(f"/images/{image_id}/download")

    assert response.status_code == 302
    assert header(response, "Content-Type") == "text/plain; charset=utf-8"
    assert response.body == b"Found: the image downloads from the URL in Location\n"
    assert (header(response, "Location") or "").startswith("http")
