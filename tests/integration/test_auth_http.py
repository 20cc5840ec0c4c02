"""``AUTH_MODE=jwt make run`` over real HTTP: chalice local runs the jwt_auth authorizer.

A second ``run_local`` (the script behind ``make run``) is started with ``AUTH_MODE=jwt`` in
its environment against the session's moto server; tokens come from ``make token``'s
script, signed with the dev stage's secret, as a developer would get them. Users are
unique to this module, so sharing moto with the other integration tests is safe.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from chalicelib.auth import issue_token
from scripts.emulator import MotoServer, free_port, wait_for_port
from scripts.token import jwt_settings
from tests.integration.support import make_image, start_run_local, stop_run_local

pytestmark = pytest.mark.integration

TIMEOUT = 30  # seconds, for every HTTP call


@pytest.fixture(scope="module")
def jwt_api(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``run_local`` serving with ``AUTH_MODE=jwt``."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("run_local_jwt") / "run_local.log"
    process = start_run_local(
        port,
        log_path,
        "--no-autoreload",
        AWS_ENDPOINT_URL=moto_server.endpoint_url,
        AUTH_MODE="jwt",
    )
    try:
        wait_for_port(port, process, timeout=60)
    except RuntimeError as error:
        stop_run_local(process)
        pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
    yield f"http://127.0.0.1:{port}"
    returncode = stop_run_local(process)
    assert returncode == 0, f"run_local exited {returncode}:\n{log_path.read_text()}"
    assert "AUTH_MODE=jwt" in log_path.read_text()


def bearer(user: str, issued_at: float | None = None, **overrides: str) -> dict[str, str]:
    """``Authorization`` for ``user``, signed like ``make token`` (``overrides``: JWT_*)."""
    settings = jwt_settings("dev", overrides)
    return {"Authorization": f"Bearer {issue_token(user, settings, 600, now=issued_at)}"}


def upload(api: str, headers: dict[str, str], user_id: str | None = None) -> requests.Response:
    body = {"image_base64": base64.b64encode(make_image("PNG", (8, 6))).decode()}
    if user_id is not None:
        body["user_id"] = user_id
    return requests.post(f"{api}/images", json=body, headers=headers, timeout=TIMEOUT)


def test_a_token_owner_uploads_lists_and_deletes(jwt_api: str) -> None:
    alice, mallory = f"it-jwt-{uuid.uuid4().hex[:8]}", f"it-jwt-{uuid.uuid4().hex[:8]}"

    created = upload(jwt_api, {**bearer(alice), "X-User-Id": mallory})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["user_id"] == alice  # the token's sub, not the header
    listing = requests.get(
        f"{jwt_api}/images", params={"user_id": alice}, headers=bearer(mallory), timeout=TIMEOUT
    )
    assert [item["image_id"] for item in listing.json()["items"]] == [record["image_id"]]

    path = f"{jwt_api}/images/{record['image_id']}"
    by_mallory = requests.delete(path, headers=bearer(mallory), timeout=TIMEOUT)
    assert by_mallory.status_code == 403
    assert by_mallory.json()["Code"] == "ForbiddenError"
    by_alice = requests.delete(path, headers=bearer(alice), timeout=TIMEOUT)
    assert by_alice.status_code == 200, by_alice.text


def test_upload_for_someone_else_is_forbidden(jwt_api: str) -> None:
    response = upload(jwt_api, bearer(f"it-jwt-{uuid.uuid4().hex[:8]}"), user_id="someone-else")

    assert response.status_code == 403
    assert response.json() == {
        "Code": "ForbiddenError",
        "Message": "user_id: must be the authenticated principal or absent",
    }


def test_missing_expired_and_forged_tokens_are_401(jwt_api: str) -> None:
    missing = upload(jwt_api, {})
    expired = upload(jwt_api, bearer("alice", issued_at=time.time() - 3600))
    forged = upload(jwt_api, bearer("alice", JWT_SECRET="f" * 40))
    wrong_audience = upload(jwt_api, bearer("alice", JWT_AUDIENCE="another-api"))

    assert missing.status_code == 401  # chalice local answers like API Gateway, no authorizer
    assert missing.json() == {"message": "Unauthorized"}
    assert expired.status_code == 401
    assert expired.json() == {
        "Code": "UnauthorizedError",
        "Message": "Authorization: token has expired",
    }
    assert forged.status_code == 401
    assert forged.json() == {
        "Code": "UnauthorizedError",
        "Message": "Authorization: token signature does not verify",
    }
    assert wrong_audience.status_code == 401
    assert wrong_audience.json()["Message"] == "Authorization: token audience (aud) is not accepted"
    assert forged.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_health_needs_no_token(jwt_api: str) -> None:
    assert requests.get(f"{jwt_api}/health", timeout=TIMEOUT).status_code == 200
