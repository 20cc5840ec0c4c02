"""``make run``'s script (``python -m scripts.run_local``) as a user runs it.

Started without ``AWS_ENDPOINT_URL``, it must start moto itself, create the bucket and
table, serve ``/health``, and leave no process behind after Ctrl-C; it must exit
non-zero when ``chalice local`` dies. Process trees are read from ``/proc`` (Linux).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from chalicelib.schema import table_definition
from scripts.emulator import MotoServer, free_port, wait_for_port
from scripts.run_local import ensure_resources, stage_environment
from tests.integration.support import (
    PROJECT_DIR,
    aws_client,
    child_environment,
    command_line,
    descendants,
    is_running,
    require_tools,
    start_run_local,
    stop_run_local,
)

pytestmark = pytest.mark.integration

BANNER = re.compile(
    r"Image service API: (?P<api>http://\S+) .* AWS emulator: (?P<endpoint>http://\S+) "
    r"\(moto server, pid (?P<pid>\d+)\)"
)


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to inspect child processes (Linux)")


def wait_for_banner(log_path: Path, timeout: float = 10.0) -> re.Match[str]:
    """Poll ``log_path`` until run_local's banner line appears; return its match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = BANNER.search(log_path.read_text())
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"no banner in run_local's output:\n{log_path.read_text()}")


def accepts_connections(url: str) -> bool:
    """Whether something listens at ``http://host:port`` of ``url``."""
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """Where run_local's output goes."""
    return tmp_path / "run_local.log"


def test_make_run_starts_moto_creates_resources_serves_and_stops_cleanly(log_path: Path) -> None:
    port = free_port()
    process = start_run_local(port, log_path)  # exactly `make run`
    try:
        wait_for_port(port, process, timeout=60)
        banner = wait_for_banner(log_path)
        assert banner["api"] == f"http://127.0.0.1:{port}"
        endpoint, moto_pid = banner["endpoint"], int(banner["pid"])
        children = descendants(process.pid)
        assert moto_pid in children
        assert any("chalice local" in command_line(pid) for pid in children), children

        config = stage_environment("dev")
        aws_client("s3", endpoint).head_bucket(Bucket=config["BUCKET_NAME"])
        table = aws_client("dynamodb", endpoint).describe_table(TableName=config["TABLE_NAME"])
        expected = table_definition(config["TABLE_NAME"])
        assert table["Table"]["TableStatus"] == "ACTIVE"
        assert table["Table"]["KeySchema"] == expected["KeySchema"]
        assert sorted(index["IndexName"] for index in table["Table"]["GlobalSecondaryIndexes"]) == [
            index["IndexName"] for index in expected["GlobalSecondaryIndexes"]
        ]

        health = requests.get(f"{banner['api']}/health", timeout=30)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        # The AWS CLI line: dummy credentials next to the endpoint (issue 18).
        assert (
            "AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 "
            f"aws --endpoint-url {endpoint}" in log_path.read_text()
        )

        # Issue 18: a file written in the repository (as `make deploy` writes infra/chalice)
        # restarts nothing: the same chalice local keeps answering.
        (chalice_pid,) = [pid for pid in children if "chalice local" in command_line(pid)]
        written = PROJECT_DIR / "chalicelib" / f".probe-{os.getpid()}.tmp"
        try:
            written.write_text("generated")
            (PROJECT_DIR / f".probe-{os.getpid()}.tmp").write_text("generated")
            for _ in range(6):
                time.sleep(0.5)
                assert requests.get(f"{banner['api']}/health", timeout=30).status_code == 200
        finally:
            written.unlink(missing_ok=True)
            (PROJECT_DIR / f".probe-{os.getpid()}.tmp").unlink(missing_ok=True)
        assert descendants(process.pid) == children
        assert is_running(chalice_pid)
        assert "restarting" not in log_path.read_text()
    finally:
        returncode = stop_run_local(process)  # Ctrl-C

    assert returncode == 0, log_path.read_text()
    assert [pid for pid in children if is_running(pid)] == []  # no orphan moto or chalice
    assert not accepts_connections(endpoint)
    assert not accepts_connections(f"http://127.0.0.1:{port}")


def test_make_reconcile_finds_the_emulator_of_a_running_make_run(
    log_path: Path, tmp_path: Path
) -> None:
    # Issue 9: `make reconcile` as the README says, while `make run` is up: no endpoint,
    # no region, no credentials in the environment (it crashed with NoRegionError).
    state = tmp_path / "run_local.json"
    port = free_port()
    process = start_run_local(port, log_path, RUN_LOCAL_STATE=str(state))
    try:
        wait_for_port(port, process, timeout=60)
        banner = wait_for_banner(log_path)
        assert json.loads(state.read_text())["endpoint_url"] == banner["endpoint"]
        env = child_environment(RUN_LOCAL_STATE=str(state))
        for name in (
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ):
            env.pop(name, None)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
        completed = subprocess.run(
            [sys.executable, "-m", "scripts.reconcile"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        returncode = stop_run_local(process)

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["orphan_objects"] == []
    assert f"from the running `make run` (pid {process.pid}" in completed.stderr
    assert returncode == 0
    assert not state.exists()  # removed on exit


def test_make_run_exits_nonzero_when_chalice_local_dies(log_path: Path) -> None:
    port = free_port()
    process = start_run_local(port, log_path, "--no-autoreload")
    try:
        wait_for_port(port, process, timeout=60)
        wait_for_banner(log_path)  # run_local is supervising now
        children = descendants(process.pid)
        (chalice_pid,) = [pid for pid in children if "chalice local" in command_line(pid)]
        os.kill(chalice_pid, signal.SIGKILL)
        returncode = process.wait(timeout=30)
    finally:
        stop_run_local(process)

    assert returncode != 0
    assert "run_local: chalice local exited (-9)" in log_path.read_text()
    assert [pid for pid in children if is_running(pid)] == []  # moto was stopped too


def test_make_run_refuses_a_port_in_use(log_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = start_run_local(port, log_path)
        returncode = process.wait(timeout=30)
    assert returncode == 1
    assert f"port {port} is in use" in log_path.read_text()


def test_ensure_resources_is_idempotent(moto_server: MotoServer) -> None:
    bucket, table = "idempotent-bucket", "idempotent-table"
    for _ in range(2):
        ensure_resources(moto_server.endpoint_url, bucket, table)
    aws_client("s3", moto_server.endpoint_url).head_bucket(Bucket=bucket)
    described = aws_client("dynamodb", moto_server.endpoint_url).describe_table(TableName=table)
    assert described["Table"]["TableStatus"] == "ACTIVE"
