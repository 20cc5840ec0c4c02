"""AUTH_ENABLED: the caller is the authorizer's principal, never a header.

The Chalice test client cannot set an authorizer context, so these tests call the app
with the API Gateway REST proxy event sample from ``tests/events/``, as Lambda would.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from chalicelib.service import ImageService
from tests.unit.conftest import image_bytes, upload

EVENTS = Path(__file__).resolve().parent.parent / "events"


@pytest.fixture
def auth_service(service: ImageService) -> ImageService:
    settings = dataclasses.replace(service.settings, auth_enabled=True)
    return ImageService(service.storage, service.metadata, settings)


def _invoke(
    method: str,
    resource: str,
    path: str,
    principal: str | None,
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
    event["requestContext"]["authorizer"] = (
        None if principal is None else {"principalId": principal}
    )
    response: dict[str, Any] = app_module.app(event, None)
    return response


def _delete(image_id: str, principal: str | None, header_user: str) -> dict[str, Any]:
    return _invoke(
        "DELETE",
        "/images/{image_id}",
        f"/images/{image_id}",
        principal,
        {"X-User-Id": header_user},
        path_parameters={"image_id": image_id},
    )


def test_principal_is_the_caller_and_the_header_is_ignored(client, auth_service):
    image_id = upload(client)["image_id"]  # owned by alice
    app_module.use_service(auth_service)

    by_mallory = _delete(image_id, principal="mallory", header_user="alice")
    no_principal = _delete(image_id, principal=None, header_user="alice")
    by_alice = _delete(image_id, principal="alice", header_user="mallory")

    assert by_mallory["statusCode"] == 403
    assert no_principal["statusCode"] == 401
    assert by_alice["statusCode"] == 200
    assert json.loads(by_alice["body"]) == {"message": "Image deleted", "image_id": image_id}


def _upload(principal: str | None, body: dict[str, Any]) -> dict[str, Any]:
    return _invoke(
        "POST", "/images", "/images", principal, {"Content-Type": "application/json"}, body
    )


@pytest.mark.parametrize(
    ("principal", "user_id", "status"),
    [("alice", None, 201), ("alice", "alice", 201), ("alice", "bob", 403), (None, "alice", 401)],
    ids=["principal-is-owner", "same-user-id", "other-user-id", "no-principal"],
)
def test_upload_owner_is_the_principal(auth_service, principal, user_id, status):
    app_module.use_service(auth_service)
    body: dict[str, Any] = {"image_base64": base64.b64encode(image_bytes()).decode()}
    if user_id is not None:
        body["user_id"] = user_id

    response = _upload(principal, body)

    assert response["statusCode"] == status, response["body"]
    if status == 201:
        assert json.loads(response["body"])["user_id"] == "alice"
