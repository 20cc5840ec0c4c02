"""Security settings of the Terraform in infra/ and of the Chalice stages, read statically.

python-hcl2 parses ``infra/*.tf``; these checks need no Terraform. What Terraform and moto
make of them is in ``tests/deploy`` (bucket policy and lifecycle applied and read back;
API Gateway throttling and the authorizer choice planned only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHALICE = ROOT / ".chalice"
_HCL_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)


def blocks(kind: str) -> dict[str, Any]:
    """Every top-level ``kind`` block (resource, data, variable, output, module) in infra/.

    ``resource`` and ``data`` are keyed ``"type.name"``; the others by name.
    """
    found: dict[str, Any] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        for block in parsed.get(kind, []):
            for name, body in block.items():
                if kind in ("resource", "data"):
                    for resource_name, resource in body.items():
                        found[f"{name}.{resource_name}"] = resource
                else:
                    found[name] = body
    return found


def test_bucket_policy_denies_every_request_without_tls() -> None:
    policy = blocks("resource")["aws_s3_bucket_policy.images"]
    assert policy["count"] == "${var.require_tls ? 1 : 0}"
    assert blocks("variable")["require_tls"]["default"] is True
    assert policy["bucket"] == "${aws_s3_bucket.images.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.images_tls_only.json}"

    (statement,) = blocks("data")["aws_iam_policy_document.images_tls_only"]["statement"]
    assert statement["effect"] == "Deny"
    assert statement["actions"] == ["s3:*"]
    assert statement["resources"] == [
        "${aws_s3_bucket.images.arn}",
        "${aws_s3_bucket.images.arn}/*",
    ]
    assert statement["principals"] == [{"type": "*", "identifiers": ["*"]}]
    assert statement["condition"] == [
        {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
    ]


def test_only_localstack_turns_the_tls_policy_off() -> None:
    with (INFRA / "localstack.tfvars").open() as handle:
        tfvars = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
    assert tfvars["require_tls"] is False  # LocalStack's S3 speaks http


def test_lifecycle_aborts_incomplete_multipart_uploads() -> None:
    lifecycle = blocks("resource")["aws_s3_bucket_lifecycle_configuration.images"]
    (rule,) = lifecycle["rule"]
    assert rule["status"] == "Enabled"
    assert rule["filter"] == [{}]  # the whole bucket
    assert rule["abort_incomplete_multipart_upload"] == [
        {"days_after_initiation": "${var.abort_incomplete_multipart_upload_days}"}
    ]
    days = blocks("variable")["abort_incomplete_multipart_upload_days"]
    assert (days["type"], days["default"]) == ("number", 1)


def test_every_api_method_is_throttled_by_variables() -> None:
    settings = blocks("resource")["aws_api_gateway_method_settings.throttling"]
    assert settings["rest_api_id"] == "${module.api.RestAPIId}"
    assert settings["stage_name"] == "${module.api.StageName}"
    assert settings["method_path"] == "*/*"
    assert settings["settings"] == [
        {
            "throttling_rate_limit": "${var.throttle_rate_limit}",
            "throttling_burst_limit": "${var.throttle_burst_limit}",
        }
    ]
    variables = blocks("variable")
    assert variables["throttle_rate_limit"]["default"] == 50
    assert variables["throttle_burst_limit"]["default"] == 100
    for name in ("throttle_rate_limit", "throttle_burst_limit"):
        assert variables[name]["validation"], name


def test_auth_mode_is_one_variable_for_the_app_and_the_gateway() -> None:
    variables = blocks("variable")
    auth_mode = variables["auth_mode"]
    assert (auth_mode["type"], auth_mode["default"]) == ("string", "jwt")
    (validation,) = auth_mode["validation"]
    assert 'contains(["none", "jwt", "cognito"], var.auth_mode)' in validation["condition"]
    assert variables["jwt_secret"]["sensitive"] is True
    assert variables["jwt_secret"]["default"] == ""
    assert variables["cognito_user_pool_arn"]["default"] == ""

    module = blocks("module")["api"]
    assert module["auth_mode"] == "${var.auth_mode}"
    assert module["jwt_secret"] == "${var.jwt_secret}"
    assert module["cognito_user_pool_arn"] == "${var.cognito_user_pool_arn}"
    assert "auth_enabled" not in module and "auth_enabled" not in variables


def test_plans_fail_without_what_the_auth_mode_needs() -> None:
    preconditions = blocks("output")["auth_mode"]["precondition"]
    conditions = " ".join(check["condition"] for check in preconditions)
    assert 'var.auth_mode != "jwt" || length(var.jwt_secret) >= 32' in conditions
    assert 'var.auth_mode != "cognito"' in conditions and "cognito-idp" in conditions


def test_stages_take_auth_mode_from_the_environment_or_terraform() -> None:
    stages = json.loads((CHALICE / "config.json").read_text())["stages"]
    localstack = stages["localstack"]["environment_variables"]
    assert localstack["AUTH_MODE"] == "${var.auth_mode}"
    assert localstack["JWT_SECRET"] == "${var.jwt_secret}"
    assert not any("AUTH_ENABLED" in stage["environment_variables"] for stage in stages.values())
    # chalice local would override the shell's AUTH_MODE with the stage's: dev sets none.
    dev = stages["dev"]["environment_variables"]
    assert "AUTH_MODE" not in dev
    assert len(dev["JWT_SECRET"].encode()) >= 32


def test_the_authorizer_function_may_only_write_its_logs() -> None:
    stage = json.loads((CHALICE / "config.json").read_text())["stages"]["localstack"]
    policy_file = stage["lambda_functions"]["jwt_auth"]["iam_policy_file"]
    policy = json.loads((CHALICE / policy_file).read_text())
    assert policy["Statement"] == [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "${var.authorizer_log_group_arn}:*",
        }
    ]
    assert blocks("module")["api"]["authorizer_log_group_arn"] == (
        "${aws_cloudwatch_log_group.authorizer.arn}"
    )
