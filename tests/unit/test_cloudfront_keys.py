"""``make keys`` (``scripts.cloudfront_keys``): a key pair whose private half goes to SSM
and a file of mode 0600, and the rotation of the trusted public keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib.urls import load_private_key
from scripts import cloudfront_keys


def _trusted(infra: Path) -> list[str]:
    document = json.loads((infra / cloudfront_keys.TFVARS_FILE).read_text())
    keys: list[str] = document["cloudfront_public_key_pems"]
    return keys


def test_keys_go_to_ssm_and_files_and_rotate_through_two(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm = boto3.client("ssm")
    assert cloudfront_keys.main(["--stage", "prod"], ssm=ssm, infra=tmp_path) == 0
    first = (tmp_path / cloudfront_keys.PUBLIC_KEY_FILE).read_text()
    private_path = tmp_path / cloudfront_keys.PRIVATE_KEY_FILE
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    name = cloudfront_keys.parameter_name("image-service", "prod", first)
    assert (
        name.startswith("/image-service/prod/cloudfront-key/") and name in capsys.readouterr().out
    )
    stored = ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]
    assert stored["Type"] == "SecureString"
    # The service reads the same key from SSM as from the file, and it matches the public one.
    pem = load_private_key(ssm, name, None)
    assert pem == private_path.read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public.decode() == first
    assert _trusted(tmp_path) == [first]

    # Rotation: the next key is trusted alongside the current one, last = signing key.
    cloudfront_keys.main(["--stage", "prod"], ssm=ssm, infra=tmp_path)
    second = (tmp_path / cloudfront_keys.PUBLIC_KEY_FILE).read_text()
    assert _trusted(tmp_path) == [first, second]
    cloudfront_keys.main(["--stage", "prod", "--no-parameter"], ssm=ssm, infra=tmp_path)
    third = (tmp_path / cloudfront_keys.PUBLIC_KEY_FILE).read_text()
    assert _trusted(tmp_path) == [second, third]  # never more than two
    cloudfront_keys.main(["--retire"], infra=tmp_path)
    assert _trusted(tmp_path) == [third]
    assert len(ssm.describe_parameters()["Parameters"]) == 2  # --no-parameter wrote none


def test_the_fingerprint_is_terraforms() -> None:
    # infra/cloudfront.tf: substr(sha256(trimspace(pem)), 0, 16). What Terraform 1.x
    # printed for this PEM with a newline on both sides:
    pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    assert cloudfront_keys.fingerprint(f"\n{pem}\n") == "24ae57010cc50fac"
