"""CORS through the Chalice test client: preflights and actual requests on several
routes, from allowed and refused origins, for a list of origins, ``*`` and none."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.cors import CorsPolicy, merge_vary
from chalicelib.service import ImageService
from tests.unit.conftest import SETTINGS, upload

ALLOWED = "https://app.example.com"
OTHER_ALLOWED = "http://localhost:3000"
REFUSED = "https://evil.example.net"

ClientFor = Callable[[tuple[str, ...]], Client]


@pytest.fixture
def client_for(service: ImageService) -> Iterator[ClientFor]:
    """A test client whose service allows ``origins`` (``CORS_ALLOW_ORIGINS``)."""
    clients: list[Client] = []

    def make(origins: tuple[str, ...]) -> Client:
        settings = dataclasses.replace(SETTINGS, cors_allow_origins=origins)
        app_module.use_service(ImageService(service.storage, service.metadata, settings))
        client = Client(app_module.app)
        clients.append(client)
        return client

    yield make
    app_module.use_service(None)


def preflight(client: Client, path: str, origin: str, method: str = "GET") -> dict[str, str]:
    response = client.http.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, x-user-id",
        },
    )
    assert response.status_code in (200, 204), response.body
    return {name.lower(): value for name, value in response.headers.items()}


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/images", "GET"),
        ("/images", "POST"),
        ("/images/some-id", "DELETE"),
        ("/images/some-id", "PATCH"),
        ("/images/some-id/download", "GET"),
        ("/health", "GET"),
        ("/", "GET"),
    ],
)
def test_preflight_from_an_allowed_origin_names_origin_methods_and_headers(
    client_for: ClientFor, path: str, method: str
) -> None:
    client = client_for((ALLOWED, OTHER_ALLOWED))
    for origin in (ALLOWED, OTHER_ALLOWED):
        headers = preflight(client, path, origin, method)
        assert headers["access-control-allow-origin"] == origin
        assert method in headers["access-control-allow-methods"].split(", ")
        allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "if-match", "x-user-id"} <= allowed
        assert int(headers["access-control-max-age"]) > 0
        assert headers["vary"] == "Origin"


def test_preflight_from_a_refused_origin_allows_nothing(client_for: ClientFor) -> None:
    client = client_for((ALLOWED,))
    headers = preflight(client, "/images", REFUSED, "POST")
    assert not any(name.startswith("access-control-") for name in headers)
    assert headers["vary"] == "Origin"


def test_preflight_for_a_method_the_path_does_not_answer_allows_nothing(
    client_for: ClientFor,
) -> None:
    headers = preflight(client_for((ALLOWED,)), "/health", ALLOWED, "DELETE")
    assert "access-control-allow-origin" not in headers


def test_actual_requests_echo_the_allowed_origin_and_expose_etag_and_location(
    client_for: ClientFor,
) -> None:
    client = client_for((ALLOWED, OTHER_ALLOWED))
    record = upload(client)  # through the middleware too
    for path in ("/images", f"/images/{record['image_id']}", "/health", "/"):
        response = client.http.get(path, headers={"Origin": OTHER_ALLOWED})
        headers = lower(response.headers)
        assert response.status_code == 200, (path, response.body)
        assert headers["access-control-allow-origin"] == OTHER_ALLOWED
        assert headers["access-control-expose-headers"] == "ETag, Location"
        assert "Origin" in headers["vary"]


def test_error_responses_carry_cors_headers_so_the_page_can_read_the_message(
    client_for: ClientFor,
) -> None:
    client = client_for((ALLOWED,))
    missing = client.http.get("/images/no-such-id", headers={"Origin": ALLOWED})
    assert missing.status_code == 404
    assert lower(missing.headers)["access-control-allow-origin"] == ALLOWED
    refused = client.http.delete("/images/no-such-id", headers={"Origin": ALLOWED})
    assert refused.status_code in (401, 404)
    assert lower(refused.headers)["access-control-allow-origin"] == ALLOWED


def test_actual_request_from_a_refused_origin_gets_no_allow_origin(
    client_for: ClientFor,
) -> None:
    response = client_for((ALLOWED,)).http.get("/images", headers={"Origin": REFUSED})
    assert response.status_code == 200  # the server answers; the browser withholds it
    headers = lower(response.headers)
    assert "access-control-allow-origin" not in headers
    assert headers["vary"] == "Origin"


def test_star_allows_every_origin_without_vary(client_for: ClientFor) -> None:
    client = client_for(("*",))
    headers = preflight(client, "/images", REFUSED, "POST")
    assert headers["access-control-allow-origin"] == "*"
    assert "vary" not in headers
    response = client.http.get("/health", headers={"Origin": REFUSED})
    assert lower(response.headers)["access-control-allow-origin"] == "*"


def test_empty_configuration_sends_no_cors_headers_at_all(client_for: ClientFor) -> None:
    client = client_for(())
    headers = preflight(client, "/images", ALLOWED, "GET")
    assert not any(name.startswith("access-control-") or name == "vary" for name in headers)
    response = client.http.get("/images", headers={"Origin": ALLOWED})
    assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_every_route_has_a_preflight_without_an_authorizer() -> None:
    for path, methods in app_module.app.routes.items():
        assert "OPTIONS" in methods, path
        assert methods["OPTIONS"].authorizer is None, path


def test_policy_matches_origins_exactly() -> None:
    policy = CorsPolicy((ALLOWED,))
    assert policy.allow_origin(ALLOWED) == ALLOWED
    assert policy.allow_origin(ALLOWED + "/") == ALLOWED
    assert policy.allow_origin("https://app.example.com.evil.net") is None
    assert policy.allow_origin("http://app.example.com") is None
    assert policy.allow_origin(None) is None
    assert CorsPolicy(()).response_headers(ALLOWED) == {}


def test_merge_vary_joins_instead_of_replacing() -> None:
    merged = merge_vary({"Vary": "Accept", "X": "1"}, {"vary": "Origin", "x": "2"})
    assert merged == {"Vary": "Accept, Origin", "X": "2"}
    assert merge_vary({"Vary": "Origin"}, {"Vary": "Origin"}) == {"Vary": "Origin"}
