"""``/health`` runs its checks concurrently, each bounded (issue 9, SPEC ``GET /health``).

A hung dependency used to make ``/health`` take the sum of both checks' timeouts (24 s,
close to API Gateway's 29 s). The checks here block on events the test controls, so
nothing sleeps: a check "hangs" until the test releases it after its assertions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from chalice.test import Client

from chalicelib import service as service_module
from chalicelib.service import HEALTH_CHECK_TIMEOUT_SECONDS, ImageService, run_checks

#: How long the tests let a hung check hang before it is reported; the checks that
#: answer do so at once, so this only bounds how long a test waits.
SHORT = 0.2


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set after the test: lets every hung check return, so no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


def test_the_bound_is_well_inside_api_gateways_29_seconds() -> None:
    assert HEALTH_CHECK_TIMEOUT_SECONDS <= 5


def test_checks_run_concurrently(release: threading.Event) -> None:
    # Each check waits until the other has started: run one after the other, the first
    # would wait in vain and be reported as not answering.
    both_started = threading.Barrier(2)

    def check() -> None:
        both_started.wait(timeout=HEALTH_CHECK_TIMEOUT_SECONDS)

    assert run_checks({"bucket": check, "table": check}, HEALTH_CHECK_TIMEOUT_SECONDS) == {
        "bucket": "ok",
        "table": "ok",
    }


def test_a_hung_check_is_reported_failing_and_does_not_hold_the_other(
    release: threading.Event,
) -> None:
    def fails() -> None:
        raise RuntimeError("table is gone")

    result = run_checks({"bucket": release.wait, "table": fails}, SHORT)

    assert result == {
        "bucket": f"no answer within {SHORT:g} s",
        "table": "RuntimeError: table is gone",
    }
    assert not release.is_set()  # the hung check was still hung when health answered


def test_health_of_a_hung_bucket_is_503_naming_it(
    client: Client,
    service: ImageService,
    release: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "HEALTH_CHECK_TIMEOUT_SECONDS", SHORT)
    monkeypatch.setattr(service.storage, "check", release.wait)

    response = client.http.get("/health")

    assert response.status_code == 503
    assert response.json_body == {
        "Code": "ServiceUnavailableError",
        "Message": f"bucket: no answer within {SHORT:g} s",
    }


def test_health_with_both_checks_hung_answers_once_the_bound_passes(
    service: ImageService, release: threading.Event
) -> None:
    service.storage.check = release.wait  # type: ignore[method-assign]
    service.metadata.check = release.wait  # type: ignore[method-assign]

    assert service.health(timeout=SHORT) == {
        "bucket": f"no answer within {SHORT:g} s",
        "table": f"no answer within {SHORT:g} s",
    }
