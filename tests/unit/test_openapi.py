"""The OpenAPI document (``chalicelib/openapi.yaml``) stays true to the app.

- Its paths and methods are exactly the app's routes, and it is valid OpenAPI 3.
- Its query parameters are exactly those the validators accept, with the same bounds.
- ``GET /openapi.json`` serves it without loading Pillow or boto3.
- A happy path through every operation (with the document's own example upload) and the
  usual errors give bodies that match the documented schema for their status.

Schemathesis checks the same document against the running API with generated requests
(``tests/integration/test_schemathesis.py``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from chalice.test import Client
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

import app as app_module
from chalicelib import validation
from chalicelib.metadata import ImageRecord
from chalicelib.openapi import openapi_document
from scripts.run_local import PROJECT_DIR
from tests.unit.conftest import post_json, upload

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
DOCUMENT_URI = "urn:image-service:openapi"


def documented_operations() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` s (``#/components/...``) until a real object."""
    while "$ref" in node:
        target: Any = openapi_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def query_parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
    """The documented query parameters of an operation, by name."""
    item = openapi_document()["paths"][path]
    parameters = [*item.get("parameters", []), *item[method].get("parameters", [])]
    return {p["name"]: p for p in map(resolve, parameters) if p["in"] == "query"}


def assert_matches_document(path: str, method: str, response: Any) -> None:
    """The response's status is documented for the operation and its body matches."""
    responses = openapi_document()["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path}: {status} is not documented"
    content = resolve(responses[status]).get("content")
    if content is None:
        return
    media_type = response.headers.get("Content-Type", "application/json").split(";")[0]
    assert media_type in content, f"{method.upper()} {path}: {status} is not {media_type}"
    if media_type != "application/json":
        return
    schema = content["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource(contents=openapi_document(), specification=DRAFT4)
    )
    anchored = json.loads(json.dumps(schema).replace('"#/', f'"{DOCUMENT_URI}#/'))
    OAS30Validator(anchored, registry=registry).validate(response.json_body)


# --- the document and the app -----------------------------------------------------------


def test_document_lists_exactly_the_app_routes():
    # Every path's OPTIONS is the CORS preflight (app.cors_preflight), not an operation.
    routes = {
        (path, method)
        for path, methods in app_module.app.routes.items()
        for method in methods
        if method != "OPTIONS"
    }
    assert documented_operations() == routes


def test_document_is_valid_openapi_3():
    validate(openapi_document())
    assert openapi_document()["openapi"].startswith("3.")


@pytest.mark.parametrize(
    ("path", "method", "accepted"),
    [
        ("/images", "get", validation._LIST_PARAMETERS),
        ("/images/{image_id}", "get", validation._VIEW_PARAMETERS),
    ],
    ids=["list", "view"],
)
def test_documented_query_parameters_are_those_the_validators_accept(path, method, accepted):
    assert set(query_parameters(path, method)) == accepted


@pytest.mark.parametrize(
    ("path", "name", "minimum", "maximum", "default"),
    [
        ("/images", "limit", 1, validation.MAX_PAGE_SIZE, validation.DEFAULT_PAGE_SIZE),
        (
            "/images/{image_id}",
            "expires_in",
            validation.MIN_URL_EXPIRES,
            validation.MAX_URL_EXPIRES,
            900,
        ),
    ],
)
def test_documented_bounds_are_the_validators_bounds(path, name, minimum, maximum, default):
    schema = query_parameters(path, "get")[name]["schema"]
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (
        minimum,
        maximum,
        default,
    )


def test_documented_record_has_exactly_the_record_fields():
    schema = openapi_document()["components"]["schemas"]["ImageRecord"]
    # ``layout`` (the shard counts an image's keys were written with) is storage, not
    # part of the API's record: ``ImageRecord.to_dict`` leaves it out.
    fields = {field.name for field in dataclasses.fields(ImageRecord)} - {"layout"}
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields


def test_documented_text_limits_are_the_validators_limits():
    schemas = openapi_document()["components"]["schemas"]
    for upload_schema in ("JsonUpload", "MultipartUpload", "ImageRecord"):
        properties = schemas[upload_schema]["properties"]
        assert properties["title"]["maxLength"] == validation.MAX_TITLE_CHARS
        assert properties["description"]["maxLength"] == validation.MAX_DESCRIPTION_CHARS
    # JSON Schema patterns search; the validators' fullmatch: anchored, they are the same.
    assert schemas["UserId"]["pattern"] == f"^{validation.USER_ID_PATTERN.pattern}$"
    assert schemas["Tag"]["pattern"] == f"^{validation.TAG_PATTERN.pattern}$"
    assert schemas["ImageRecord"]["properties"]["tags"]["maxItems"] == validation.MAX_TAGS
    assert schemas["Metadata"]["maxProperties"] == validation.MAX_METADATA_KEYS


# --- serving it -------------------------------------------------------------------------


def test_get_openapi_json_serves_the_document():
    with Client(app_module.app) as client:
        response = client.http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json_body == openapi_document()


def test_serving_the_document_loads_neither_pillow_nor_boto3():
    script = (
        "import sys\n"
        "from chalicelib.openapi import openapi_document\n"
        "assert openapi_document()['paths']\n"
        "print(sorted(m for m in ('PIL', 'boto3', 'botocore') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# --- responses match the documented schemas ---------------------------------------------


def _patch(
    client: Client, image_id: str, body: Any, user: str | None, if_match: str | None = None
) -> Any:
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["X-User-Id"] = user
    if if_match is not None:
        headers["If-Match"] = if_match
    return client.http.request(
        "PATCH", f"/images/{image_id}", headers=headers, body=json.dumps(body).encode()
    )


def test_example_upload_and_every_operation_match_the_document(client):
    example = openapi_document()["components"]["requestBodies"]["Upload"]["content"][
        "application/json"
    ]["example"]
    created = post_json(client, example)
    assert created.status_code == 201, created.body
    assert_matches_document("/images", "post", created)
    image_id = created.json_body["image_id"]
    assert created.headers["Location"] == f"/images/{image_id}"
    upload(client, "alice", tags=["cat"])  # a second image, so the first page has a token

    calls = [
        ("/images", "get", client.http.get("/images?user_id=alice&limit=1")),
        ("/images", "get", client.http.get("/images?limit=0")),
        ("/images/{image_id}", "get", client.http.get(f"/images/{image_id}?download=true")),
        ("/images/{image_id}", "get", client.http.get(f"/images/{image_id}?metadata_only=1")),
        ("/images/{image_id}", "get", client.http.get(f"/images/{uuid.uuid4()}")),
        ("/images/{image_id}/download", "get", client.http.get(f"/images/{image_id}/download")),
        ("/images/{image_id}", "patch", _patch(client, image_id, {"title": "x"}, "alice")),
        ("/images/{image_id}", "patch", _patch(client, image_id, {"user_id": "x"}, "alice")),
        ("/images/{image_id}", "patch", _patch(client, image_id, {"title": "x"}, None)),
        ("/images/{image_id}", "patch", _patch(client, image_id, {"title": "x"}, "mallory")),
        ("/images/{image_id}", "patch", _patch(client, image_id, {"title": "x"}, "alice", '"1"')),
        ("/images/{image_id}", "patch", _patch(client, str(uuid.uuid4()), {"title": "x"}, "a")),
        ("/images/{image_id}", "delete", client.http.delete(f"/images/{image_id}")),
        (
            "/images/{image_id}",
            "delete",
            client.http.delete(f"/images/{image_id}", headers={"X-User-Id": "mallory"}),
        ),
        (
            "/images/{image_id}",
            "delete",
            client.http.delete(f"/images/{image_id}", headers={"X-User-Id": "alice"}),
        ),
        ("/health", "get", client.http.get("/health")),
        (
            "/images",
            "post",
            client.http.post("/images", headers={"Content-Type": "text/plain"}, body=b"x"),
        ),
    ]
    statuses = [response.status_code for _, _, response in calls]
    assert statuses == [
        *(200, 400, 200, 200, 404, 302),
        *(200, 400, 401, 403, 412, 404),  # PATCH
        *(401, 403, 200, 200, 415),
    ]
    for path, method, response in calls:
        assert_matches_document(path, method, response)
    assert calls[2][2].headers["ETag"] == '"1"'
    assert calls[6][2].headers["ETag"] == '"2"'
    assert calls[0][2].json_body["next_token"]
    assert "download_url" not in calls[3][2].json_body
