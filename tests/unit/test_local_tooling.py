"""What a new user runs besides the API: ``make help``, ``make test``'s Terraform mirror,
and ``make reconcile`` finding the emulator of a running ``make run`` (issue 9).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import reconcile as reconcile_script
from scripts.emulator import PROJECT_DIR
from scripts.run_local import remove_state, running_state, state_path, write_state

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    environ.pop("TF_PLUGIN_DIR", None)
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=PROJECT_DIR,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


# --- make help, make test --------------------------------------------------------------


@needs_make
def test_make_help_prints_the_real_port() -> None:
    assert "http://127.0.0.1:8000 " in make("help")
    listing = make("help", "PORT=8123")
    assert "http://127.0.0.1:8123 " in listing
    assert "$(PORT)" not in listing


@needs_make
def test_make_test_uses_the_provider_mirror_when_it_exists(tmp_path: Path) -> None:
    mirror = tmp_path / "tf-plugins"
    mirror.mkdir()
    for target in ("test", "deploy-test"):
        dry_run = make("-n", target, f"TF_PLUGIN_MIRROR={mirror}")
        assert f"TF_PLUGIN_DIR={mirror} .venv/bin/pytest" in dry_run
        # TF_PLUGIN_DIR set by hand wins; no mirror and no TF_PLUGIN_DIR: none.
        dry_run = make("-n", target, env={"TF_PLUGIN_DIR": "/elsewhere"})
        assert "TF_PLUGIN_DIR=/elsewhere .venv/bin/pytest" in dry_run
        dry_run = make("-n", target, f"TF_PLUGIN_MIRROR={tmp_path / 'absent'}")
        assert "TF_PLUGIN_DIR" not in dry_run
    assert f"-plugin-dir={mirror}" in make("-n", "deploy", f"TF_PLUGIN_MIRROR={mirror}")


# --- the state file of make run --------------------------------------------------------


def test_state_file_round_trip_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert running_state(path) is None
    write_state(
        path, api_url="http://127.0.0.1:8000", endpoint_url="http://127.0.0.1:5000", stage="dev"
    )
    assert running_state(path) == {
        "pid": os.getpid(),
        "api_url": "http://127.0.0.1:8000",
        "endpoint_url": "http://127.0.0.1:5000",
        "stage": "dev",
    }
    remove_state(path)
    assert not path.exists()


def test_a_state_file_of_a_process_that_is_gone_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "state.json"
    path.write_text(f'{{"pid": {gone.pid}, "endpoint_url": "http://127.0.0.1:5000"}}')
    assert running_state(path) is None
    path.write_text("{not json")
    assert running_state(path) is None


def test_another_processes_state_file_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"pid": 1, "endpoint_url": "http://127.0.0.1:5000"}')
    remove_state(path)
    assert path.exists()


def test_the_state_file_is_outside_the_project_unless_overridden() -> None:
    # Run state is not part of the checkout.
    default = state_path({})
    assert PROJECT_DIR not in default.parents
    assert default.name.startswith("image-service-run-local-")
    assert state_path({}) == default  # the same for every process of this checkout
    assert state_path({"RUN_LOCAL_STATE": "/tmp/x.json"}) == Path("/tmp/x.json")


# --- make reconcile finds the emulator, or says what it needs --------------------------


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment with no AWS configuration at all (no region, no credentials)."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name in ("BUCKET_NAME", "TABLE_NAME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("RUN_LOCAL_STATE", str(tmp_path / "state.json"))
    return os.environ  # type: ignore[return-value]


@pytest.fixture
def anything_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoints of these tests need not run: only where reconcile points matters."""
    monkeypatch.setattr(reconcile_script, "check_listening", lambda endpoint, source: None)


def test_reconcile_uses_the_emulator_of_a_running_make_run(
    bare_environment: dict[str, str], anything_listens: None
) -> None:
    path = state_path(bare_environment)
    write_state(
        path, api_url="http://127.0.0.1:8001", endpoint_url="http://127.0.0.1:5055", stage="dev"
    )

    said = reconcile_script.locate_aws(bare_environment, None)

    assert said == (
        f"reconcile: http://127.0.0.1:5055, from the running `make run` (pid {os.getpid()}, "
        "http://127.0.0.1:8001)"
    )
    assert bare_environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5055"
    assert bare_environment["AWS_DEFAULT_REGION"] == "us-east-1"
    assert bare_environment["BUCKET_NAME"]  # the dev stage's


def test_reconcile_prefers_aws_endpoint_url(
    bare_environment: dict[str, str], anything_listens: None
) -> None:
    write_state(
        state_path(bare_environment), api_url="x", endpoint_url="http://127.0.0.1:5055", stage="dev"
    )
    bare_environment["AWS_ENDPOINT_URL"] = "http://localhost:4566"

    said = reconcile_script.locate_aws(bare_environment, None)

    assert said == "reconcile: http://localhost:4566, from AWS_ENDPOINT_URL"
    assert bare_environment["AWS_ENDPOINT_URL"] == "http://localhost:4566"


def test_reconcile_without_anything_to_talk_to_says_what_it_needs(
    bare_environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["reconcile"])

    assert reconcile_script.main() == 2

    error = capsys.readouterr().err
    assert "start `make run` first" in error
    assert "AWS_ENDPOINT_URL" in error
    assert "NoRegionError" not in error


def test_reconcile_with_nothing_listening_says_so_in_one_line() -> None:
    # As the README runs it: `AWS_ENDPOINT_URL=http://127.0.0.1:9 make reconcile`.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.reconcile"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "reconcile: nothing answers at http://127.0.0.1:9 (from AWS_ENDPOINT_URL"
    )
    assert "start `make run`" in line


# --- make run RELOAD=1 watches the code only --------------------------------------------


def test_reload_watches_the_code_and_nothing_else(tmp_path: Path) -> None:
    from scripts.run_local import code_fingerprint

    (tmp_path / "chalicelib" / "web").mkdir(parents=True)
    (tmp_path / ".chalice").mkdir()
    (tmp_path / "app.py").write_text("app")
    (tmp_path / "chalicelib" / "web" / "app.js").write_text("js")
    (tmp_path / ".chalice" / "config.json").write_text("{}")
    before = code_fingerprint(tmp_path)
    assert sorted(before) == [".chalice/config.json", "app.py", "chalicelib/web/app.js"]

    (tmp_path / "infra" / "chalice").mkdir(parents=True)
    (tmp_path / "infra" / "chalice" / "chalice.tf.json").write_text("{}")  # make deploy
    (tmp_path / "chalicelib" / "__pycache__").mkdir()
    (tmp_path / "chalicelib" / "__pycache__" / "x.pyc").write_text("")
    (tmp_path / "README.md").write_text("docs")
    assert code_fingerprint(tmp_path) == before

    os.utime(tmp_path / "chalicelib" / "web" / "app.js", ns=(1, 1))
    assert code_fingerprint(tmp_path) != before
