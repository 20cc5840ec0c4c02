"""Integration fixtures: the API over real HTTP, exactly as ``make run`` serves it.

One moto server (``python -m moto.server``) and one ``python -m scripts.run_local``
run as subprocesses for the whole session. ``run_local`` is given the moto server
through ``AWS_ENDPOINT_URL`` (its "use a running emulator" path), so the tests go
through the same code as ``make run``: stage config read from ``.chalice/config.json``,
bucket and table created from ``chalicelib.schema``, then ``chalice local`` started and
supervised. Owning the moto server here lets tests look into S3 directly (e.g. that a
delete removed the object). ``tests/integration/test_run_local.py`` covers the other
path, where ``run_local`` starts moto itself.

Readiness is polled on the port (``scripts.emulator.wait_for_port``), never slept for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.emulator import (
    MotoServer,
    free_port,
    start_moto_server,
    wait_for_port,
)
from scripts.run_local import stage_environment
from tests.integration.support import (
    Stack,
    aws_client,
    require_tools,
    start_run_local,
    stop_run_local,
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's server on a free loopback port, for the whole session."""
    require_tools()
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``run_local`` serving the API on a free port against :func:`moto_server`.

    ``--no-autoreload``: files edited while the suite runs must not restart the server.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("run_local") / "run_local.log"
    process = start_run_local(
        port, log_path, "--no-autoreload", AWS_ENDPOINT_URL=moto_server.endpoint_url
    )
    try:
        wait_for_port(port, process, timeout=60)
    except RuntimeError as error:
        stop_run_local(process)
        pytest.fail(f"run_local did not serve: {error}\n{log_path.read_text()}")
    config = stage_environment("dev")
    yield Stack(
        base_url=f"http://127.0.0.1:{port}",
        endpoint_url=moto_server.endpoint_url,
        bucket=config["BUCKET_NAME"],
        table=config["TABLE_NAME"],
        s3=aws_client("s3", moto_server.endpoint_url),
        log_path=log_path,
    )
    returncode = stop_run_local(process)
    assert returncode == 0, f"run_local exited {returncode}:\n{log_path.read_text()}"
