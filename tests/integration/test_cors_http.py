"""CORS over real HTTP: ``make run``'s script serving with ``CORS_ALLOW_ORIGINS`` set,
preflights and actual requests through ``chalice local``, and the emulated bucket's CORS
that ``run_local`` configures for the same origins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.emulator import MotoServer, free_port, wait_for_port
from scripts.run_local import stage_environment
from tests.integration.support import start_run_local, stop_run_local

pytestmark = pytest.mark.integration

ALLOWED = "https://app.example.com"
ALSO_ALLOWED = "http://localhost:3000"
REFUSED = "https://evil.example.net"


@pytest.fixture(scope="module")
def cors_api(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """run_local with two allowed origins; yields its base URL."""
    port = free_port()
    log_path: Path = tmp_path_factory.mktemp("cors") / "run_local.log"
    process = start_run_local(
        port,
        log_path,
        "--no-autoreload",
        AWS_ENDPOINT_URL=moto_server.endpoint_url,
        CORS_ALLOW_ORIGINS=f"{ALLOWED}, {ALSO_ALLOWED}",
    )
    try:
        wait_for_port(port, process, timeout=60)
    except RuntimeError as error:
        stop_run_local(process)
        pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
    yield f"http://127.0.0.1:{port}"
    assert stop_run_local(process) == 0, log_path.read_text()


def preflight(url: str, origin: str, method: str) -> requests.Response:
    return requests.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type,x-user-id,authorization",
        },
        timeout=30,
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/images", "POST"),
        ("/images/abc", "DELETE"),
        ("/images/abc", "PATCH"),
        ("/health", "GET"),
        ("/", "GET"),
    ],
)
def test_preflight_through_chalice_local(cors_api: str, path: str, method: str) -> None:
    for origin in (ALLOWED, ALSO_ALLOWED):
        response = preflight(cors_api + path, origin, method)
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert method in response.headers["Access-Control-Allow-Methods"]
        assert "X-User-Id" in response.headers["Access-Control-Allow-Headers"]
        assert response.headers["Vary"] == "Origin"
    refused = preflight(cors_api + path, REFUSED, method)
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_actual_requests_through_chalice_local(cors_api: str) -> None:
    listing = requests.get(f"{cors_api}/images", headers={"Origin": ALSO_ALLOWED}, timeout=30)
    assert listing.status_code == 200
    assert listing.headers["Access-Control-Allow-Origin"] == ALSO_ALLOWED
    assert listing.headers["Access-Control-Expose-Headers"] == "ETag, Location"
    missing = requests.get(f"{cors_api}/images/nope", headers={"Origin": ALLOWED}, timeout=30)
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == ALLOWED
    refused = requests.get(f"{cors_api}/health", headers={"Origin": REFUSED}, timeout=30)
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_the_emulated_bucket_allows_the_same_origins_and_the_page(
    cors_api: str, moto_server: MotoServer
) -> None:
    bucket_url = f"{moto_server.endpoint_url}/{stage_environment('dev')['BUCKET_NAME']}"
    page_origin = cors_api  # the gallery served by the API posts to the bucket
    for origin in (ALLOWED, ALSO_ALLOWED, page_origin):
        response = preflight(bucket_url, origin, "POST")
        assert response.status_code == 200, response.text
        assert response.headers["Access-Control-Allow-Origin"] == origin
    refused = preflight(bucket_url, REFUSED, "POST")
    # moto answers a refused preflight 403 (it echoes the origin all the same).
    assert refused.status_code == 403
