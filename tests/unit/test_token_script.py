"""`make token USER=alice [TTL=...]` (scripts/token.py): dev bearer tokens for AUTH_MODE=jwt."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import jwt
import pytest

from chalicelib.auth import verify_token
from chalicelib.config import JwtSettings
from scripts.run_local import stage_environment
from scripts.token import jwt_settings, main

ROOT = Path(__file__).resolve().parents[2]
DEV = JwtSettings.from_env(stage_environment("dev"))


def test_the_token_is_one_the_dev_stage_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alice"], environ={}) == 0

    printed = capsys.readouterr().out
    assert printed.count("\n") == 1  # only the token: $(make -s token ...) is usable as is
    token = printed.strip()
    assert verify_token(token, DEV) == "alice"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60


def test_ttl_sets_the_lifetime(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bob", "--ttl", "90"], environ={}) == 0

    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 90


def test_environment_overrides_the_stage() -> None:
    environ = {"JWT_SECRET": "e" * 40, "JWT_AUDIENCE": "deployed-api"}

    settings = jwt_settings("dev", environ)

    assert settings == JwtSettings(secret="e" * 40, issuer=DEV.issuer, audience="deployed-api")


def test_a_terraform_stage_needs_the_secret_in_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The localstack stage's values are ${var.*} references: they count as unset.
    assert main(["alice", "--stage", "localstack"], environ={}) == 2
    assert "JWT_SECRET is required" in capsys.readouterr().err

    assert main(["alice", "--stage", "localstack"], environ={"JWT_SECRET": "d" * 48}) == 0
    token = capsys.readouterr().out.strip()
    deployed = JwtSettings(secret="d" * 48)  # Terraform's default issuer and audience
    assert verify_token(token, deployed) == "alice"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alice smith"], "user: must be 1-128 of [A-Za-z0-9_.@-]"),
        (["alice", "--ttl", "0"], "ttl: must be 1 to 86400 seconds"),
        (["alice", "--stage", "prod"], "no stage 'prod'"),
    ],
)
def test_bad_input_is_reported(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ={}) == 2
    assert message in capsys.readouterr().err


def test_make_token_prints_a_token_for_user() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "-s", "--no-print-directory", "token", "USER=carol", "TTL=120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert verify_token(result.stdout.strip(), DEV) == "carol"
