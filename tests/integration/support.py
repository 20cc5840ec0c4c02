"""Helpers shared by the integration tests: subprocess control, images, the stack."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.emulator import DUMMY_CREDENTIALS, PROJECT_DIR
from scripts.run_local import chalice_command

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment minus any AWS endpoint/profile, plus dummy credentials.

    Keeps a developer's own AWS settings from leaking into the emulated stack.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))
    }
    env.update(DUMMY_CREDENTIALS)
    env.update(extra)
    return env


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for the emulator at ``endpoint_url``, with the dummy credentials."""
    make_client: Any = boto3.client  # its overloads want a literal service name
    return make_client(
        service,
        endpoint_url=endpoint_url,
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def require_tools() -> None:
    """Skip (with the reason) when chalice or moto's server is not installed."""
    try:
        chalice_command(port=0)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("PIL", reason="Pillow is not installed")


def start_run_local(
    port: int, log_path: Path, *extra_args: str, **env: str
) -> subprocess.Popen[bytes]:
    """Start ``python -m scripts.run_local --port PORT`` with output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "scripts.run_local", "--port", str(port), *extra_args],
            cwd=PROJECT_DIR,
            env=child_environment(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_run_local(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Ctrl-C ``run_local`` (SIGINT) and return its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@dataclass(frozen=True)
class Stack:
    """The running API and what it stores into."""

    base_url: str
    endpoint_url: str
    bucket: str
    table: str
    s3: Any
    log_path: Path

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/images``."""
        return f"{self.base_url}{path}"


def make_image(
    fmt: str, size: tuple[int, int], color: tuple[int, int, int] = (200, 40, 90)
) -> bytes:
    """Encode a solid image with Pillow (``fmt``: JPEG, PNG, GIF or WEBP)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def fixture_bytes(name: str) -> bytes:
    """The bytes of a committed file in ``tests/fixtures``."""
    return (FIXTURES / name).read_bytes()


def process_table() -> dict[int, tuple[int, str]]:
    """Every process on this Linux machine: ``pid -> (parent pid, state letter)``."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Format: "pid (comm) state ppid ...", and comm may contain spaces or parentheses.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        table[int(entry.name)] = (int(ppid), state)
    return table


def descendants(root: int) -> set[int]:
    """The pids of all processes below ``root`` (children, grandchildren, ...)."""
    table = process_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (exited, waiting to be reaped)."""
    entry = process_table().get(pid)
    return entry is not None and entry[1] != "Z"


def command_line(pid: int) -> str:
    """The command line of ``pid`` ("" when it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
