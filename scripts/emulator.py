"""Start moto's server on loopback: the AWS emulator for `make run` and the tests.

moto's server runs as a child process (``python -m scripts.emulator --port N``), so it
behaves like a real endpoint: boto3 clients, presigned URLs and ``chalice local`` all
talk HTTP to it.

It answers one request at a time. moto's own threaded server is not safe for
concurrent DynamoDB transactions: ``transact_write_items`` deep-copies the whole table
first and, when any item's condition fails, puts that copy back, so a transaction that
fails while another commits (two deletes of the same image, say) silently undoes the
other one and everything written meanwhile (moto 5.2.5: 400 concurrent transactions,
half failing a condition, lost 2 of 200 committed writes). Real DynamoDB applies each
request atomically; serializing requests restores exactly that, while clients' calls
still interleave freely between requests.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 30.0
) -> None:
    """Poll until something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        RuntimeError: ``process`` exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class MotoServer:
    """A running moto server child process and the endpoint URL it answers at."""

    process: subprocess.Popen[bytes]
    endpoint_url: str

    def stop(self) -> None:
        """Terminate the server and wait for it (kills it after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """A WSGI app that runs ``app`` (and reads its whole body) under one lock."""
    lock = threading.Lock()

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return call


def serve(port: int) -> None:
    """Serve moto's backends on 127.0.0.1:``port``, one request at a time, with
    transactions rolled back item by item, until killed."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    from scripts.moto_patches import item_level_rollback

    app = DomainDispatcherApplication(create_backend_app)
    with item_level_rollback():
        run_simple(
            "127.0.0.1", port, serialized(app), threaded=True, request_handler=MotoRequestHandler
        )


def start_moto_server(port: int | None = None, quiet: bool = True) -> MotoServer:
    """Start moto's server (:func:`serve`) in a child process on 127.0.0.1 and return
    once it accepts connections.

    Args:
        port: TCP port; a free one is picked when None.
        quiet: send the server's request log to /dev/null.
    """
    port = port or free_port()
    output = subprocess.DEVNULL if quiet else None
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in DUMMY_CREDENTIALS.items()}}
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.emulator", "--port", str(port)],
        stdout=output,
        stderr=output,
        env=env,
        cwd=PROJECT_DIR,
    )
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise
    return MotoServer(process=process, endpoint_url=f"http://127.0.0.1:{port}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="moto's server, one request at a time")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)
