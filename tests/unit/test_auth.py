"""AUTH_MODE: bearer token verification, the jwt_auth authorizer, and who the caller is.

- ``chalicelib.auth`` on its own: what a token must satisfy, and why it is refused.
- The app in ``jwt`` mode through Chalice's test client, which runs the ``jwt_auth``
  authorizer the way ``chalice local`` does: a copy of ``app.py`` is imported with
  ``AUTH_MODE=jwt`` (the mode is read when ``app.py`` is imported).
- Defense in depth and ``cognito`` mode with API Gateway events from ``tests/events/``,
  as Lambda gets them after the gateway's authorizer ran (or did not).
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from chalice.test import Client

import app as app_module
from chalicelib import auth
from chalicelib.config import ConfigurationError, JwtSettings
from chalicelib.service import ImageService
from scripts.run_local import stage_environment
from tests.unit.conftest import image_bytes, post_form, post_json, upload

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
# The dev stage's: Chalice's test client, like chalice local, sets the stage's environment.
JWT = JwtSettings.from_env(stage_environment("dev"))
JWT_ENV = {"JWT_SECRET": JWT.secret, "JWT_ISSUER": JWT.issuer, "JWT_AUDIENCE": JWT.audience}


def token(sub: str | None = "alice", key: str = JWT.secret, **claims: Any) -> str:
    """A token with valid claims for ``sub``; ``claims`` override (None removes one)."""
    algorithm = claims.pop("alg", "HS256")
    now = int(time.time())
    payload = {"sub": sub, "iss": JWT.issuer, "aud": JWT.audience, "iat": now, "exp": now + 600}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm)


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand (for algorithms PyJWT would not sign with this key)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)]
    )


@pytest.fixture(autouse=True)
def _rebuild_service_after_each_test() -> Iterator[None]:
    yield
    app_module.use_service(None)


# --- chalicelib.auth: token verification -------------------------------------------------


def test_a_valid_token_gives_its_subject():
    assert auth.verify_token(token("alice"), JWT) == "alice"


def test_issue_token_round_trips_and_sets_every_claim():
    issued = auth.issue_token("bob@example.com", JWT, ttl_seconds=120, now=1_800_000_000)
    claims = jwt.decode(issued, options={"verify_signature": False})

    assert claims == {
        "sub": "bob@example.com",
        "iss": JWT.issuer,
        "aud": JWT.audience,
        "iat": 1_800_000_000,
        "exp": 1_800_000_120,
    }
    assert jwt.get_unverified_header(issued)["alg"] == "HS256"
    assert auth.verify_token(auth.issue_token("bob", JWT), JWT) == "bob"


@pytest.mark.parametrize(
    ("bad_token", "reason"),
    [
        (token(exp=int(time.time()) - 60), "token has expired"),
        (token(key="k" * 32), "token signature does not verify"),
        (token(iss="someone-else"), "token issuer (iss) is not accepted"),
        (token(aud="another-api"), "token audience (aud) is not accepted"),
        (token(sub=None), "token has no 'sub' claim"),
        (token(exp=None), "token has no 'exp' claim"),
        (token(iss=None), "token has no 'iss' claim"),
        (token(aud=None), "token has no 'aud' claim"),
        (token(nbf=int(time.time()) + 600), "token is not valid yet"),
        (token(sub="alice smith"), "token subject (sub) is not a valid user_id"),
        (token(alg="HS512", key=JWT.secret * 2), "token algorithm must be HS256"),
        (unsigned({"alg": "none"}, {"sub": "alice"}), "token algorithm must be HS256"),
        (unsigned({"alg": "RS256"}, {"sub": "alice"}, b"x" * 256), "token algorithm must be HS256"),
        ("not-a-jwt", "not a well-formed JWT"),
    ],
    ids=[
        "expired",
        "forged-signature",
        "wrong-issuer",
        "wrong-audience",
        "no-sub",
        "no-exp",
        "no-iss",
        "no-aud",
        "not-yet-valid",
        "sub-not-a-user-id",
        "hs512",
        "alg-none",
        "rs256",
        "garbage",
    ],
)
def test_a_bad_token_is_refused_with_its_reason(bad_token, reason):
    with pytest.raises(auth.TokenRejectedError) as refused:
        auth.verify_token(bad_token, JWT)

    assert str(refused.value).startswith(f"Authorization: {reason}")
    assert JWT.secret not in str(refused.value)


def test_clock_skew_within_the_leeway_is_tolerated():
    skewed = token(exp=int(time.time()) - auth.LEEWAY_SECONDS // 2)
    assert auth.verify_token(skewed, JWT) == "alice"


def test_an_audience_list_naming_this_api_is_accepted():
    assert auth.verify_token(token(aud=["other", JWT.audience]), JWT) == "alice"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_token_reads_the_credential(header, expected):
    assert auth.bearer_token(header) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing bearer token"),
        ("  ", "missing bearer token"),
        ("Basic YWxpY2U6cHc=", "expected 'Bearer <token>'"),
        ("Bearer", "expected 'Bearer <token>'"),
        ("abc.def.ghi", "expected 'Bearer <token>'"),
    ],
)
def test_bearer_token_refuses_other_credentials(header, reason):
    with pytest.raises(auth.TokenRejectedError, match=f"^Authorization: {reason}$"):
        auth.bearer_token(header)


@pytest.mark.parametrize(
    ("subject", "ttl"), [("bad user", 60), ("alice", 0), ("alice", auth.MAX_TTL_SECONDS + 1)]
)
def test_issue_token_refuses_bad_input(subject, ttl):
    with pytest.raises(ValueError, match=r"^(user|ttl): "):
        auth.issue_token(subject, JWT, ttl_seconds=ttl)


def test_authorize_raises_what_gateways_answer_401_to():
    assert auth.authorize(f"Bearer {token('carol')}", JWT_ENV) == "carol"
    with pytest.raises(auth.GatewayUnauthorizedError) as refused:
        auth.authorize(f"Bearer {token(exp=1)}", JWT_ENV)

    error = refused.value
    assert str(error) == "Unauthorized"  # API Gateway's 401 trigger: this message exactly
    assert error.CODE == 401  # chalice local / test client
    assert json.loads(error.body or b"") == {
        "Code": "UnauthorizedError",
        "Message": "Authorization: token has expired",
    }
    assert error.headers["WWW-Authenticate"].startswith("Bearer")


def test_authorize_without_a_secret_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        auth.authorize(f"Bearer {token()}", {})


@pytest.mark.parametrize(
    ("value", "declared"),
    [
        (None, False),
        ("none", False),
        ("jwt", True),
        ("JWT", True),
        ("cognito", False),
        ("${var.auth_mode}", True),
    ],
)
def test_which_imports_declare_the_authorizer(value, declared):
    environ = {} if value is None else {"AUTH_MODE": value}
    assert auth.declares_authorizer(environ) is declared


def test_an_unknown_auth_mode_stops_the_import():
    with pytest.raises(ConfigurationError, match="AUTH_MODE must be one of none, jwt, cognito"):
        auth.declares_authorizer({"AUTH_MODE": "oauth"})


@pytest.mark.parametrize(
    ("mode", "context", "expected"),
    [
        ("jwt", {"authorizer": {"principalId": "alice"}}, "alice"),
        ("jwt", {"authorizer": {"claims": {"sub": "alice"}}}, None),
        ("jwt", {"authorizer": None}, None),
        ("jwt", {}, None),
        ("cognito", {"authorizer": {"claims": {"sub": "a1b2-c3"}}}, "a1b2-c3"),
        ("cognito", {"authorizer": {"principalId": "alice"}}, None),
        ("cognito", {"authorizer": {"claims": {"sub": ""}}}, None),
        ("none", {"authorizer": {"principalId": "alice"}}, None),
    ],
)
def test_principal_by_mode(mode, context, expected):
    assert auth.principal(mode, context) == expected


# --- The app in jwt mode, through Chalice's test client (what chalice local does) ------


@pytest.fixture
def jwt_service(service: ImageService) -> ImageService:
    settings = dataclasses.replace(service.settings, auth_mode="jwt")
    return ImageService(service.storage, service.metadata, settings)


@pytest.fixture
def jwt_app(monkeypatch: pytest.MonkeyPatch, jwt_service: ImageService) -> ModuleType:
    """A fresh copy of ``app.py`` imported with ``AUTH_MODE=jwt``, serving ``jwt_service``."""
    monkeypatch.setenv("AUTH_MODE", "jwt")
    for name, value in JWT_ENV.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("app_in_jwt_mode", ROOT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.use_service(jwt_service)
    return module


@pytest.fixture
def jwt_client(jwt_app: ModuleType) -> Iterator[Client]:
    with Client(jwt_app.app) as test_client:
        yield test_client


def bearer(sub: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **claims)}"}


def json_upload(user_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"image_base64": base64.b64encode(image_bytes()).decode()}
    if user_id is not None:
        body["user_id"] = user_id
    return body


def test_every_images_and_uploads_route_carries_the_authorizer_and_health_does_not(jwt_app):
    for path, methods in jwt_app.app.routes.items():
        for method, entry in methods.items():
            # A CORS preflight carries no credentials: OPTIONS is never behind it.
            protected = path.startswith(("/images", "/uploads")) and method != "OPTIONS"
            assert (entry.authorizer is jwt_app.jwt_auth) is protected, (method, path)
    # The default import (AUTH_MODE unset) declares none: X-User-Id mode.
    assert all(
        entry.authorizer is None
        for methods in app_module.app.routes.values()
        for entry in methods.values()
    )


@pytest.mark.parametrize(
    ("user_id", "status"),
    [(None, 201), ("alice", 201), ("bob", 403)],
    ids=["absent-user-id", "same-user-id", "other-user-id"],
)
def test_upload_owner_is_the_token_subject(jwt_client, user_id, status):
    response = post_json(jwt_client, json_upload(user_id), headers=bearer("alice"))

    assert response.status_code == status, response.body
    if status == 201:
        assert response.json_body["user_id"] == "alice"
    else:
        assert response.json_body == {
            "Code": "ForbiddenError",
            "Message": "user_id: must be the authenticated principal or absent",
        }


def test_multipart_upload_for_another_user_is_forbidden(jwt_client):
    fields = [("file", ("a.png", image_bytes(), "image/png")), ("user_id", "bob")]

    response = post_form(jwt_client, fields, headers=bearer("alice"))

    assert response.status_code == 403
    assert response.json_body["Message"].startswith("user_id:")


def test_the_header_identity_is_ignored_in_jwt_mode(jwt_client):
    response = post_json(jwt_client, json_upload(), headers={**bearer("alice"), "X-User-Id": "bob"})

    assert response.status_code == 201
    assert response.json_body["user_id"] == "alice"


def test_only_the_owner_deletes(jwt_client):
    image_id = post_json(jwt_client, json_upload(), headers=bearer("alice")).json_body["image_id"]
    path = f"/images/{image_id}"

    by_bob = jwt_client.http.delete(path, headers={**bearer("bob"), "X-User-Id": "alice"})
    by_alice = jwt_client.http.delete(path, headers=bearer("alice"))

    assert by_bob.status_code == 403
    assert by_bob.json_body["Code"] == "ForbiddenError"
    assert by_alice.status_code == 200
    assert by_alice.json_body == {"message": "Image deleted", "image_id": image_id}


def test_only_the_owner_edits_and_the_header_identity_is_ignored(jwt_client):
    image_id = post_json(jwt_client, json_upload(), headers=bearer("alice")).json_body["image_id"]
    path = f"/images/{image_id}"
    body = json.dumps({"title": "edited"}).encode()
    json_type = {"Content-Type": "application/json"}

    def edit(headers: dict[str, str]) -> Any:
        return jwt_client.http.request("PATCH", path, headers={**json_type, **headers}, body=body)

    without_token = edit({"X-User-Id": "alice"})
    by_bob = edit({**bearer("bob"), "X-User-Id": "alice"})
    by_alice = edit(bearer("alice"))

    assert without_token.status_code == 401
    assert (by_bob.status_code, by_bob.json_body["Code"]) == (403, "ForbiddenError")
    assert by_bob.json_body["Message"].startswith("Authorization (the authenticated principal): ")
    assert (by_alice.status_code, by_alice.json_body["title"]) == (200, "edited")


def test_reading_needs_a_token_and_any_user_may_read(jwt_client):
    image_id = post_json(jwt_client, json_upload(), headers=bearer("alice")).json_body["image_id"]

    assert jwt_client.http.get("/images", headers=bearer("bob")).status_code == 200
    assert jwt_client.http.get(f"/images/{image_id}", headers=bearer("bob")).status_code == 200
    assert jwt_client.http.get("/images").status_code == 401
    assert jwt_client.http.get(f"/images/{image_id}/download").status_code == 401


def test_health_stays_open(jwt_client):
    assert jwt_client.http.get("/health").status_code == 200


def test_no_authorization_header_is_401(jwt_client):
    # chalice local answers this itself, as API Gateway does, before any authorizer runs.
    response = post_json(jwt_client, json_upload("alice"))

    assert response.status_code == 401
    assert json.loads(response.body) == {"message": "Unauthorized"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (bearer(exp=int(time.time()) - 60), "token has expired"),
        (bearer(key="k" * 32), "token signature does not verify"),
        (bearer(aud="another-api"), "token audience (aud) is not accepted"),
        (bearer(iss="someone-else"), "token issuer (iss) is not accepted"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "expected 'Bearer <token>'"),
    ],
    ids=["expired", "forged", "wrong-audience", "wrong-issuer", "not-bearer"],
)
def test_a_refused_token_is_401_with_the_reason(jwt_client, headers, reason):
    response = post_json(jwt_client, json_upload(), headers=headers)

    assert response.status_code == 401
    assert response.json_body == {
        "Code": "UnauthorizedError",
        "Message": f"Authorization: {reason}",
    }
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


# --- Defense in depth and cognito mode: API Gateway events as Lambda receives them -------


def _mode_service(service: ImageService, mode: str) -> ImageService:
    settings = dataclasses.replace(service.settings, auth_mode=mode)
    return ImageService(service.storage, service.metadata, settings)


def _invoke(
    method: str,
    resource: str,
    path: str,
    authorizer: dict[str, Any] | None,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Call the app as Lambda would, with the event sample reshaped for this request."""
    event = json.loads((EVENTS / "apigw_rest_delete_image.json").read_text())
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        headers=headers,
        multiValueHeaders={name: [value] for name, value in headers.items()},
        pathParameters=path_parameters,
        body=None if body is None else json.dumps(body),
        isBase64Encoded=False,
    )
    event["requestContext"].update(resourcePath=resource, httpMethod=method)
    event["requestContext"]["authorizer"] = authorizer
    response: dict[str, Any] = app_module.app(event, None)
    return response


def _delete(image_id: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    return _invoke(
        "DELETE",
        "/images/{image_id}",
        f"/images/{image_id}",
        authorizer,
        {"X-User-Id": "alice"},
        path_parameters={"image_id": image_id},
    )


def _upload(authorizer: dict[str, Any] | None, user_id: str | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "X-User-Id": "alice"}
    return _invoke("POST", "/images", "/images", authorizer, headers, json_upload(user_id))


@pytest.mark.parametrize("mode", ["jwt", "cognito"])
def test_without_a_principal_every_images_route_is_401_even_past_the_gateway(service, mode):
    app_module.use_service(_mode_service(service, mode))

    listing = _invoke("GET", "/images", "/images", None, {"X-User-Id": "alice"})
    uploaded = _upload(None, "alice")
    health = _invoke("GET", "/health", "/health", None, {})

    for response in (listing, uploaded):
        assert response["statusCode"] == 401, response["body"]
        assert json.loads(response["body"]) == {
            "Code": "UnauthorizedError",
            "Message": "Authorization: no authenticated principal",
        }
    assert health["statusCode"] == 200


def test_jwt_mode_principal_is_the_caller_and_the_header_is_ignored(client, service):
    image_id = upload(client)["image_id"]  # owned by alice
    app_module.use_service(_mode_service(service, "jwt"))

    by_mallory = _delete(image_id, {"principalId": "mallory"})
    no_principal = _delete(image_id, None)
    by_alice = _delete(image_id, {"principalId": "alice"})

    assert by_mallory["statusCode"] == 403
    assert no_principal["statusCode"] == 401
    assert by_alice["statusCode"] == 200


COGNITO_SUB = "3f2b7c1e-1d2a-4c5b-9e8f-0a1b2c3d4e5f"


def _cognito(sub: str) -> dict[str, Any]:
    """``requestContext.authorizer`` after API Gateway's Cognito user pool authorizer."""
    return {"claims": {"sub": sub, "cognito:username": "alice", "token_use": "id"}}


@pytest.mark.parametrize(("user_id", "status"), [(None, 201), (COGNITO_SUB, 201), ("alice", 403)])
def test_cognito_mode_the_caller_is_the_sub_claim(service, user_id, status):
    app_module.use_service(_mode_service(service, "cognito"))

    response = _upload(_cognito(COGNITO_SUB), user_id)

    assert response["statusCode"] == status, response["body"]
    if status == 201:
        image_id = json.loads(response["body"])["image_id"]
        assert json.loads(response["body"])["user_id"] == COGNITO_SUB
        assert _delete(image_id, _cognito("someone-else"))["statusCode"] == 403
        assert _delete(image_id, _cognito(COGNITO_SUB))["statusCode"] == 200


# --- issue 9: whole-string subjects; messages that name what this mode reads -----------


@pytest.mark.parametrize("sub", ["alice\n", "alice\r\n", "\nalice", "alice bob"])
def test_a_subject_that_only_starts_like_a_user_id_is_refused(sub):
    with pytest.raises(auth.TokenRejectedError, match="sub"):
        auth.verify_token(token(sub), JWT)


def test_a_subject_with_a_trailing_newline_is_a_401(jwt_client):
    response = jwt_client.http.get("/images", headers=bearer("alice\n"))

    assert response.status_code == 401
    assert response.json_body["Message"] == (
        "Authorization: token subject (sub) is not a valid user_id"
    )


def test_a_non_owners_delete_names_the_principal_not_x_user_id(jwt_client):
    image_id = post_json(jwt_client, json_upload(), headers=bearer("alice")).json_body["image_id"]

    response = jwt_client.http.delete(f"/images/{image_id}", headers=bearer("bob"))

    assert response.status_code == 403
    message = response.json_body["Message"]
    assert message.startswith("Authorization (the authenticated principal): only the owner")
    assert "X-User-Id" not in message


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-jwt"}], ids=["no-token", "bad-token"]
)
def test_a_401_never_names_x_user_id(jwt_client, headers):
    response = jwt_client.http.delete(
        "/images/7f1c1f5e-0000-4000-8000-000000000000", headers=headers
    )

    assert response.status_code == 401
    assert "X-User-Id" not in response.body.decode()


def test_the_authorizers_401_says_nosniff(jwt_client):
    response = jwt_client.http.get("/images", headers={"Authorization": "Bearer not-a-jwt"})

    assert response.status_code == 401
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_apps_own_401_without_a_principal_names_authorization(jwt_app):
    # A request that reaches the app without a principal (the gateway let it through).
    mode_service = jwt_app.image_service()
    with Client(jwt_app.app) as client:
        jwt_app.app.routes["/images"]["GET"].authorizer = None
        try:
            response = client.http.get("/images")
        finally:
            jwt_app.app.routes["/images"]["GET"].authorizer = jwt_app.jwt_auth
    assert mode_service.settings.auth_mode == "jwt"
    assert response.status_code == 401
    assert response.json_body["Message"] == "Authorization: no authenticated principal"
