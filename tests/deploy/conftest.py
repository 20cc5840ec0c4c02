"""Fixtures for the deploy tests: the packaged app, Terraform, and moto's server on loopback.

LocalStack needs Docker, which CI does not have, so these run the real toolchain
(``chalice package``, the post-process step, ``terraform``/``tflocal``) against moto's
server instead. Whatever is missing (terraform, the AWS provider, chalice, tflocal) makes
the tests skip with the reason printed (``-ra`` in pyproject.toml shows it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.cloudfront_keys import generate
from scripts.emulator import MotoServer, start_moto_server
from scripts.package_terraform import main as post_process

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"
STAGE = "localstack"
#: What the deploy tests set cors_allow_origins and sweep_grace_seconds to.
CORS_ORIGINS = ["http://localhost:8000", "https://app.example.com"]
SWEEP_GRACE_SECONDS = 1
#: The CloudFront signing key pair of the planned stack (``make keys`` makes one so).
CLOUDFRONT_PRIVATE_PEM, CLOUDFRONT_PUBLIC_PEM = generate()
# Output of `terraform init` when the provider cannot be had (no registry, no mirror).
PROVIDER_UNAVAILABLE = (
    "Failed to query available provider packages",
    "Failed to install provider",
    "could not connect to registry",
)


@dataclass
class Terraform:
    """A copy of infra/ with the packaged app in ./chalice, and how to run Terraform there."""

    workdir: Path
    env: dict[str, str]
    terraform: str
    tflocal: str
    moto_endpoint: str
    outputs: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str, local: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``terraform ARGS`` (``tflocal ARGS`` when ``local``) in the work dir.

        Raises:
            AssertionError: the command exited non-zero (its output is in the message).
        """
        command = [self.tflocal if local else self.terraform, *args]
        result = subprocess.run(
            command, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return path


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's server on 127.0.0.1: the AWS the deploy tests deploy to."""
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def packaged_infra(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of infra/*.tf with the app packaged and post-processed into ./chalice.

    This is what `make package` builds, in a temporary directory so the tests never touch
    a developer's infra/ state.
    """
    chalice = _tool("chalice", "pip install -r requirements-dev.txt")
    workdir = tmp_path_factory.mktemp("deploy") / "infra"
    workdir.mkdir()
    for source in INFRA.glob("*.tf"):
        shutil.copy(source, workdir / source.name)
    package = subprocess.run(
        [
            chalice,
            "package",
            "--pkg-format",
            "terraform",
            "--stage",
            STAGE,
            str(workdir / "chalice"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "AWS_DEFAULT_REGION": REGION},
    )
    assert package.returncode == 0, f"chalice package failed:\n{package.stdout}\n{package.stderr}"
    assert post_process([str(workdir / "chalice" / "chalice.tf.json")]) == 0
    return workdir


@pytest.fixture(scope="session")
def terraform(packaged_infra: Path, moto_server: MotoServer) -> Terraform:
    """``terraform init`` done in the packaged copy of infra/, set up to target moto.

    ``TF_PLUGIN_DIR`` (a provider mirror, e.g. /opt/tf-plugins) makes init offline;
    without it init asks the registry, and the tests skip if that fails.
    """
    terraform_cli = _tool("terraform", "Terraform >= 1.5 on PATH")
    tflocal = _tool("tflocal", "pip install terraform-local")
    plugin_dir = os.environ.get("TF_PLUGIN_DIR", "")
    if plugin_dir and not (Path(plugin_dir) / "registry.terraform.io/hashicorp/aws").is_dir():
        pytest.skip(f"TF_PLUGIN_DIR={plugin_dir} holds no registry.terraform.io/hashicorp/aws")
    endpoint = moto_server.endpoint_url
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,  # tflocal points every service here ...
        "S3_HOSTNAME": "127.0.0.1",  # ... S3 too (path style, no *.localstack.cloud DNS)
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "DISABLE_DEPRECATION_NOTICE": "1",
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_VAR_region": REGION,
        "TF_VAR_stage": STAGE,
        "TF_VAR_token_secret": secrets.token_urlsafe(48),
        # Deployed with the JWT authorizer: the variable reaches the functions' AUTH_MODE.
        "TF_VAR_auth_mode": "jwt",
        "TF_VAR_jwt_secret": secrets.token_urlsafe(48),
        # The deployed function signs presigned URLs for this endpoint, as on LocalStack.
        "TF_VAR_s3_public_endpoint_url": endpoint,
        # One variable for the API's CORS_ALLOW_ORIGINS and the bucket's CORS rule.
        "TF_VAR_cors_allow_origins": json.dumps(CORS_ORIGINS),
        # The sweep may remove what the deploy tests leave behind within seconds
        # (the default, an hour, would make its test wait that long).
        "TF_VAR_sweep_grace_seconds": str(SWEEP_GRACE_SECONDS),
        # The full plan has CloudFront (enable_cloudfront defaults to true) with this key.
        "TF_VAR_cloudfront_public_key_pems": json.dumps([CLOUDFRONT_PUBLIC_PEM]),
    }
    env.pop("AWS_PROFILE", None)
    tf = Terraform(packaged_infra, env, terraform_cli, tflocal, endpoint)
    init = ["init", "-input=false", "-no-color"]
    if plugin_dir:
        init.append(f"-plugin-dir={plugin_dir}")
    result = subprocess.run(
        [terraform_cli, *init],
        cwd=packaged_infra,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(marker in output for marker in PROVIDER_UNAVAILABLE):
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            error = next((i for i, line in enumerate(lines) if line.startswith("Error:")), 0)
            pytest.skip(
                "terraform init could not get the hashicorp/aws provider (set TF_PLUGIN_DIR "
                f"to a provider mirror, e.g. /opt/tf-plugins): {' '.join(lines[error : error + 3])}"
            )
        pytest.fail(f"terraform init failed:\n{output}")
    return tf


@pytest.fixture(scope="session")
def plan(terraform: Terraform) -> dict[str, Any]:
    """``tflocal plan`` of the full configuration against moto, as ``terraform show -json``."""
    terraform.run("plan", "-input=false", "-no-color", "-out=full.tfplan", local=True)
    shown = terraform.run("show", "-json", "full.tfplan")
    result: dict[str, Any] = json.loads(shown.stdout)
    return result


def not_applicable_on_moto(address: str) -> bool:
    """What is planned (see ``test_full_configuration_plans``), not applied, against moto.

    API Gateway resources (REST API, deployment, stage, method settings) and the
    permissions that name the API (``rest_api_invoke``, ``jwt_auth_invoke``): moto's API
    Gateway refuses the Swagger 2.0 body Chalice generates (the permissions that let S3
    and EventBridge invoke the upload handler and the sweep are applied). The TLS-only
    bucket policy: moto applies a bucket policy's Deny statements without evaluating
    their conditions, so it would refuse every object call, and moto only speaks http
    anyway. CloudFront: moto has distributions, OACs, public keys and key groups but no
    cache policies, and the functions' environment names the distribution, so the stack
    is applied with ``enable_cloudfront = false`` (``IMAGE_URL_SIGNER=s3``) and the
    CloudFront wiring is checked on the plan.
    """
    dotted = f".{address}"
    return any(
        kind in dotted
        for kind in (
            ".aws_api_gateway_",
            ".aws_lambda_permission.rest_api_invoke",
            ".aws_lambda_permission.jwt_auth_invoke",
            ".aws_s3_bucket_policy.",
            ".aws_cloudfront_",
        )
    )


@pytest.fixture(scope="session")
def applied(terraform: Terraform, plan: dict[str, Any]) -> Terraform:
    """``tflocal apply`` against moto of every planned resource moto can create."""
    targets = [
        change["address"]
        for change in plan["resource_changes"]
        if change["mode"] == "managed" and not not_applicable_on_moto(change["address"])
    ]
    terraform.run(
        "apply",
        "-input=false",
        "-no-color",
        "-auto-approve",
        "-var=enable_cloudfront=false",
        *(f"-target={address}" for address in targets),
        local=True,
    )
    outputs = json.loads(terraform.run("output", "-json").stdout)
    terraform.outputs = {name: value["value"] for name, value in outputs.items()}
    return terraform
