"""Schemathesis against ``chalice local`` (moto's server behind it), driven by the API's
own OpenAPI document as the running API serves it at ``GET /openapi.json``.

For every operation, Schemathesis generates requests from the document: its examples
(the example upload is a real 1x1 PNG, so the success paths run and their 201/200 bodies
are checked too), the boundaries of every documented bound (coverage), random requests,
both valid ones and ones that break the document (fuzzing), and chains that follow the
document's links from an upload to view, download and delete (stateful). Every response
must pass: no 5xx, a status code, content type, headers and body the document lists for
that operation; a deleted image is gone, a created one can be read.

It runs Schemathesis's command line (its stable interface; its pytest plugin does not
support pytest 9's nodes yet) in a subprocess, with the settings in
``tests/integration/schemathesis.toml``: a fixed seed, so a failure reproduces, and a
bounded number of examples per operation, so the run takes about a minute on two cores.
A failure prints Schemathesis's report, with a curl command for each failing case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.support import Stack

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().with_name("schemathesis.toml")
TIMEOUT = 600  # seconds for the whole run; it takes about a minute
#: The owner named by the document's example upload.
EXAMPLE_USER = "alice"


def test_every_operation_conforms_to_the_document(stack: Stack, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        f"--config-file={CONFIG}",
        "run",
        stack.url("/openapi.json"),
        f"--url={stack.base_url}",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,  # Schemathesis and Hypothesis write their caches here
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"Schemathesis found problems:\n{report}"
    # The document's example upload was accepted: the 201 path was checked as well.
    listing = requests.get(stack.url(f"/images?user_id={EXAMPLE_USER}&limit=1"), timeout=30)
    assert listing.status_code == 200 and listing.json()["count"] == 1, report
