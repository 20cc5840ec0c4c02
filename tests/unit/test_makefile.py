"""Makefile targets a new user runs first (issue 18): ``make up`` and ``make deploy`` on a
machine without Docker or LocalStack say in one line what is missing and what to do
instead, in well under 5 s (``make up`` failed with ``unknown shorthand flag: 'd'``,
``make deploy`` after 2 m 43 s of Terraform); ``make install`` writes a CLI that runs
from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.emulator import PROJECT_DIR, free_port

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def run_make(*args: str, path: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "MAKEFLAGS": ""}
    if path is not None:
        env["PATH"] = path
    began = time.monotonic()
    done = subprocess.run(
        [shutil.which("make") or "make", "--no-print-directory", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, time.monotonic() - began


def test_make_up_without_a_docker_engine(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    docker = fake / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)

    done, seconds = run_make("up", path=f"{fake}:{os.environ['PATH']}")

    assert done.returncode != 0
    assert seconds < 5
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "make up: no Docker engine answers (`docker info` failed)" in line
    assert "`make deploy-test` runs the same Terraform" in line


def test_make_deploy_without_localstack() -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    done, seconds = run_make("deploy", f"LOCALSTACK_URL={closed}")

    assert done.returncode != 0
    assert seconds < 5
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"make deploy: LocalStack does not answer at {closed}/_localstack/health" in line
    assert "`make up` starts it" in line and "`make deploy-test`" in line


def test_make_install_writes_a_cli_that_runs_from_any_folder(tmp_path: Path) -> None:
    # A stand-in venv (its python runs this one's), so the shared .venv is left alone.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / ".installed").touch()
    cli = venv / "bin" / "image-client"

    done, _ = run_make(f"VENV={venv}", str(cli))
    assert done.returncode == 0, done.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    helped = subprocess.run(
        [str(cli), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: image-client" in helped.stdout
    # Relative paths stay the caller's: a download into ./saved/ of this folder.
    unreachable = subprocess.run(
        [str(cli), "download", "ID", "-o", "saved/", "--api", "http://127.0.0.1:9"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unreachable.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:9" in unreachable.stderr
