"""Upload and poll under ``make run``'s own script: the S3 event reaches the app.

``python -m scripts.run_local`` is started as a user starts it (it starts moto itself);
this test is the client: ``POST /uploads``, the presigned POST with ``requests`` to the
returned ``url`` and ``fields``, then ``GET /uploads/{upload_id}`` until the upload is
``ready``, without ever calling ``complete``. Only the notification ``make run`` wires
(bucket -> queue -> ``app.on_upload_created``, ``scripts.deliver_uploads``) can get it
there. Polling is bounded by a deadline, at short intervals.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.emulator import free_port, wait_for_port
from tests.integration.support import (
    descendants,
    is_running,
    make_image,
    require_tools,
    start_run_local,
    stop_run_local,
)
from tests.integration.test_run_local import wait_for_banner

pytestmark = pytest.mark.integration

READY_WITHIN_SECONDS = 60
POLL_INTERVAL_SECONDS = 0.1


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to inspect child processes (Linux)")


def poll_until_not_pending(url: str, deadline: float) -> dict[str, Any]:
    """``GET url`` until the upload is no longer ``pending`` or ``deadline`` (monotonic)
    passes; return the last status."""
    while True:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["status"] != "pending" or time.monotonic() > deadline:
            return status
        time.sleep(POLL_INTERVAL_SECONDS)


def test_upload_and_poll_becomes_ready_without_complete(tmp_path: Path) -> None:
    log_path = tmp_path / "run_local.log"
    port = free_port()
    process = start_run_local(port, log_path, "--no-autoreload")
    try:
        wait_for_port(port, process, timeout=60)
        api = wait_for_banner(log_path)["api"]
        children = descendants(process.pid)
        headers = {"X-User-Id": f"poll-{uuid.uuid4().hex[:8]}"}
        data = make_image("PNG", (800, 600))

        started = requests.post(
            f"{api}/uploads",
            json={"title": "Polled", "filename": "polled.png", "size_bytes": len(data)},
            headers=headers,
            timeout=30,
        )
        assert started.status_code == 201, started.text
        upload = started.json()
        assert upload["status"] == "pending"
        form = upload["upload"]
        posted = requests.post(
            form["url"],
            data=form["fields"],
            files={form["file_field"]: ("polled.png", data)},
            timeout=30,
        )
        assert posted.status_code in (200, 201, 204), posted.text

        status = poll_until_not_pending(
            f"{api}/uploads/{upload['upload_id']}", time.monotonic() + READY_WITHIN_SECONDS
        )

        log = log_path.read_text()
        assert status["status"] == "ready", f"{status}\n{log}"
        record = status["image"]
        assert record["image_id"] == upload["image_id"]
        assert (record["width"], record["height"]) == (800, 600)
        view = requests.get(f"{api}/images/{record['image_id']}", timeout=30)
        assert view.status_code == 200 and view.json()["image_id"] == record["image_id"]
        # The event path did it: the delivery handed the object to the deployed handler.
        assert f"uploads/{upload['upload_id']} -> on_upload_created" in log
    finally:
        returncode = stop_run_local(process)

    assert returncode == 0, log_path.read_text()
    assert [pid for pid in children if is_running(pid)] == []  # delivery stopped too
