"""moto's server answering one request at a time, for tests that send concurrent requests.

Why: moto's threaded server is not safe for concurrent DynamoDB transactions. Its
``transact_write_items`` deep-copies the whole table first and, when any item's
condition fails, puts that copy back: a transaction that fails while another one
commits (two deletes of the same image, say) silently undoes the other one, and
everything else written meanwhile. (Seen with moto 5.2.5: 400 concurrent transactions,
half failing a condition, lost 2 of the 200 committed writes.) Real DynamoDB applies each
request atomically; serializing requests restores exactly that, while our code's calls
from many threads still interleave freely between requests.

Run as ``python -m tests.integration.serial_moto --port PORT``; :func:`start` does that and
waits for the port.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from scripts.emulator import DUMMY_CREDENTIALS, MotoServer, free_port, wait_for_port
from scripts.run_local import PROJECT_DIR
from tests.integration.support import child_environment


def serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """A WSGI app that runs ``app`` (and reads its whole body) under one lock."""
    lock = threading.Lock()

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return call


def main(argv: list[str] | None = None) -> None:
    """Serve moto on 127.0.0.1:``--port`` until killed."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        args.port,
        serialized(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


def start() -> MotoServer:
    """Start the serialized server on a free port; returns once it accepts connections."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.serial_moto", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=PROJECT_DIR,
        env=child_environment(**DUMMY_CREDENTIALS),
    )
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise
    return MotoServer(process=process, endpoint_url=f"http://127.0.0.1:{port}")


if __name__ == "__main__":
    main()
