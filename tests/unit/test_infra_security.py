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
import pytest
from hcl2 import SerializationOptions

from chalicelib.config import MIB, Settings
from chalicelib.storage import KEY_PREFIX, RENDITION_PREFIX, UPLOAD_PREFIX
from chalicelib.urls import DISPOSITION_PARAMETER

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
    assert policy["count"] == "${var.require_tls || var.enable_cloudfront ? 1 : 0}"
    assert blocks("variable")["require_tls"]["default"] is True
    assert policy["bucket"] == "${aws_s3_bucket.images.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.images.json}"
    # One policy: the TLS statement when required, the distribution's when enabled.
    sources = blocks("data")["aws_iam_policy_document.images"]["source_policy_documents"]
    assert "var.require_tls ? [data.aws_iam_policy_document.images_tls_only.json] : []" in sources
    assert "data.aws_iam_policy_document.images_cloudfront" in sources

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


def _lifecycle_rules() -> dict[str, Any]:
    lifecycle = blocks("resource")["aws_s3_bucket_lifecycle_configuration.images"]
    return {rule["id"]: rule for rule in lifecycle["rule"]}


def test_lifecycle_aborts_incomplete_multipart_uploads() -> None:
    rules = _lifecycle_rules()
    assert set(rules) == {"abort-incomplete-multipart-uploads", "expire-direct-uploads"}
    rule = rules["abort-incomplete-multipart-uploads"]
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


def _locals() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        for block in parsed.get("locals", []):
            found.update(block)
    return found


def test_direct_uploads_left_behind_expire_by_lifecycle() -> None:
    rule = _lifecycle_rules()["expire-direct-uploads"]
    assert rule["status"] == "Enabled"
    assert rule["filter"] == [{"prefix": "${local.upload_prefix}"}]
    assert rule["expiration"] == [{"days": "${local.upload_expiration_days}"}]
    values = _locals()
    assert values["upload_prefix"] == UPLOAD_PREFIX == "uploads/"
    # Whole days, rounded up, at least 1 (S3 lifecycle counts days).
    assert values["upload_expiration_days"] == (
        "${max(1, ceil(var.upload_expires_seconds / 86400))}"
    )


@pytest.mark.parametrize(
    ("seconds", "days"), [(1, 1), (3600, 1), (86400, 1), (86401, 2), (604800, 7)]
)
def test_upload_expiration_days_round_up_to_whole_days(seconds: int, days: int) -> None:
    # The expression of local.upload_expiration_days, evaluated the way Terraform does.
    assert max(1, -(-seconds // 86400)) == days


def test_table_expires_items_by_the_schema_ttl_attribute() -> None:
    (ttl,) = blocks("resource")["aws_dynamodb_table.metadata"]["ttl"]
    assert ttl == {"attribute_name": "expires_at_epoch", "enabled": True}


def test_bucket_cors_and_the_api_share_one_origins_variable() -> None:
    cors = blocks("resource")["aws_s3_bucket_cors_configuration.images"]
    # An empty list: no rule at all (same origin only), as the API then answers no CORS.
    assert cors["count"] == "${length(var.cors_allow_origins) > 0 ? 1 : 0}"
    (rule,) = cors["cors_rule"]
    assert rule["allowed_origins"] == "${var.cors_allow_origins}"
    # Presigned POST (direct uploads) and GET/HEAD (images, renditions); no PUT any more.
    assert sorted(rule["allowed_methods"]) == ["GET", "HEAD", "POST"]
    variable = blocks("variable")["cors_allow_origins"]
    assert (variable["type"], variable["default"]) == ("${list(string)}", [])
    assert blocks("module")["api"]["cors_allow_origins"] == '${join(",", var.cors_allow_origins)}'
    stage = json.loads((CHALICE / "config.json").read_text())["stages"]["localstack"]
    assert stage["environment_variables"]["CORS_ALLOW_ORIGINS"] == "${var.cors_allow_origins}"
    assert "cors_allowed_origins" not in blocks("variable")


#: Settings read from the environment, the Terraform variable each deploy takes it from,
#: and that variable's default (Settings' own default, in Terraform's form).
DEPLOYED_SETTINGS = {
    "MAX_IMAGE_BYTES": ("max_image_bytes", 50 * MIB),
    "MAX_IMAGE_PIXELS": ("max_image_pixels", 50_000_000),
    "MAX_DECODE_BYTES": ("max_decode_bytes", 256 * MIB),
    "MAX_DECODED_PIXELS": ("max_decoded_pixels", 1_000_000_000),
    "MAX_ANIMATION_FRAMES": ("max_animation_frames", 300),
    "RENDITION_SIZES": ("rendition_sizes", [320, 640, 1080]),
    "UPLOAD_EXPIRES_SECONDS": ("upload_expires_seconds", 3600),
    "UPLOAD_LEASE_SECONDS": ("upload_lease_seconds", 180),
    "URL_EXPIRES_SECONDS": ("url_expires_seconds", 900),
    "URL_CACHE_WINDOW_SECONDS": ("url_cache_window_seconds", 3600),
    "CORS_ALLOW_ORIGINS": ("cors_allow_origins", []),
    "SWEEP_GRACE_SECONDS": ("sweep_grace_seconds", 3600),
}


@pytest.mark.parametrize("env_name", sorted(DEPLOYED_SETTINGS))
def test_settings_are_terraform_variables_with_the_settings_defaults(env_name: str) -> None:
    name, default = DEPLOYED_SETTINGS[env_name]
    stage = json.loads((CHALICE / "config.json").read_text())["stages"]["localstack"]
    assert stage["environment_variables"][env_name] == f"${{var.{name}}}"
    variable = blocks("variable")[name]
    assert variable["default"] == default
    passed = blocks("module")["api"][name]
    assert passed in (f"${{var.{name}}}", f'${{join(",", var.{name})}}'), passed
    # The same defaults as Settings (chalicelib/config.py).
    defaults = Settings(bucket_name="b", table_name="t", token_secret="s" * 32)
    attribute = getattr(defaults, name)
    assert (list(attribute) if isinstance(attribute, tuple) else attribute) == default


def _policy(function: str | None) -> dict[str, set[str]]:
    """``{resource: actions}`` of a function's policy file (None: the API handler's)."""
    stage = json.loads((CHALICE / "config.json").read_text())["stages"]["localstack"]
    if function is None:
        name = stage["iam_policy_file"]
    else:
        name = stage["lambda_functions"][function]["iam_policy_file"]
    document = json.loads((CHALICE / name).read_text())
    granted: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement and "NotAction" not in statement
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            granted.setdefault(resource, set()).update(statement["Action"])
    return granted


BUCKET = "${var.bucket_arn}"
TABLE = "${var.table_arn}"
IMAGES = f"{BUCKET}/{KEY_PREFIX}*"
UPLOADS = f"{BUCKET}/{UPLOAD_PREFIX}*"
RENDITIONS = f"{BUCKET}/{RENDITION_PREFIX}*"
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_the_api_function_may_do_what_requests_need_and_no_scan() -> None:
    table_actions = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",  # an upload's status (complete)
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
        "dynamodb:DescribeTable",  # /health
    }
    objects = {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
    assert _policy(None) == {
        "${var.log_group_arn}:*": LOGS,
        BUCKET: {"s3:ListBucket"},  # /health's HeadBucket; HeadObject answers 404, not 403
        # images: upload, presigned GET, delete; uploads: the presigned POST is signed
        # with this role (PutObject), complete reads and removes it; renditions: written
        # by complete's ingest, presigned GETs, removed with their image.
        IMAGES: objects,
        UPLOADS: objects,
        RENDITIONS: objects,
        TABLE: table_actions,
        f"{TABLE}/index/*": table_actions,
        # The CloudFront signing key's SSM parameters (cloudfront.tf); the AWS managed
        # key aws/ssm lets every principal of the account decrypt: no kms:Decrypt.
        "${var.cloudfront_key_parameter_arn}": {"ssm:GetParameter"},
    }


def test_the_upload_handler_may_only_ingest() -> None:
    # What uploads.on_object_created -> ingest calls: HeadObject/GetObject/DeleteObject
    # of uploads/{id}; PutObject of the image and renditions, DeleteObject of them when
    # the commit fails or lost a race; GetItem (upload, image), the commit's
    # TransactWriteItems (authorized item by item: Put of the image and tag items,
    # Update of the upload) and the feed month marker (PutItem), UpdateItem (rejected).
    # No Query, no Scan, no DeleteItem, no index.
    assert _policy("on_upload_created") == {
        "${var.upload_handler_log_group_arn}:*": LOGS,
        # HeadObject (s3:GetObject) of an object gone since (a repeated event) is a 404
        # only with ListBucket, a 403 without.
        BUCKET: {"s3:ListBucket"},
        UPLOADS: {"s3:GetObject", "s3:DeleteObject"},
        IMAGES: {"s3:PutObject", "s3:DeleteObject"},
        RENDITIONS: {"s3:PutObject", "s3:DeleteObject"},
        TABLE: {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    }


def test_the_sweep_is_the_one_function_that_may_scan() -> None:
    # What chalicelib/sweep.py calls: ListObjectsV2 slices of each prefix, HeadObject of
    # an image's original, DeleteObject of leftovers; a bounded, resumable Scan (the one
    # Scan allowed: not a request path) with its cursor item (GetItem/PutItem/
    # DeleteItem); image and tag item deletes (TransactWriteItems: Delete, and a
    # ConditionCheck that the image is gone); and uploads whose bytes arrived are
    # finished through ingest (PutObject of image and renditions, UpdateItem).
    objects = {"s3:GetObject", "s3:DeleteObject"}
    assert _policy("sweep") == {
        "${var.sweep_log_group_arn}:*": LOGS,
        BUCKET: {"s3:ListBucket"},
        IMAGES: objects | {"s3:PutObject"},
        UPLOADS: objects,
        RENDITIONS: objects | {"s3:PutObject"},
        TABLE: {
            "dynamodb:Scan",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        },
    }
    scanners = [
        function
        for function in (None, "jwt_auth", "on_upload_created", "sweep")
        if any("dynamodb:Scan" in actions for actions in _policy(function).values())
    ]
    assert scanners == ["sweep"]


def test_each_function_writes_only_its_own_log_group() -> None:
    module = blocks("module")["api"]
    for variable, log_group in [
        ("log_group_arn", "api"),
        ("authorizer_log_group_arn", "authorizer"),
        ("upload_handler_log_group_arn", "upload_handler"),
        ("sweep_log_group_arn", "sweep"),
    ]:
        assert module[variable] == f"${{aws_cloudwatch_log_group.{log_group}.arn}}"
    names = {
        name: group["name"]
        for name, group in blocks("resource").items()
        if name.startswith("aws_cloudwatch_log_group.")
    }
    assert names == {
        "aws_cloudwatch_log_group.api": "/aws/lambda/${local.function_name}",
        "aws_cloudwatch_log_group.authorizer": "/aws/lambda/${local.function_name}-jwt_auth",
        "aws_cloudwatch_log_group.upload_handler": (
            "/aws/lambda/${local.function_name}-on_upload_created"
        ),
        "aws_cloudwatch_log_group.sweep": "/aws/lambda/${local.function_name}-sweep",
    }


def test_cloudfront_serves_the_image_paths_signed_from_the_private_bucket() -> None:
    resources = blocks("resource")
    local = blocks("locals")
    # The signed paths are the storage's key prefixes; the cache key holds the canned
    # policy's parameters and the attachment disposition (chalicelib.urls), nothing else.
    assert local["cloudfront_signed_paths"] == [f"{KEY_PREFIX}*", f"{RENDITION_PREFIX}*"]
    assert local["cloudfront_query_keys"] == [
        "Expires",
        "Signature",
        "Key-Pair-Id",
        DISPOSITION_PARAMETER,
    ]
    distribution = resources["aws_cloudfront_distribution.images"]
    assert distribution["count"] == "${local.cloudfront_enabled ? 1 : 0}"
    assert distribution["http_version"] == "http2and3"
    assert distribution["price_class"] == "${var.cloudfront_price_class}"
    assert blocks("variable")["cloudfront_price_class"]["default"] == "PriceClass_100"
    (origin,) = distribution["origin"]
    assert origin["origin_access_control_id"] == (
        "${aws_cloudfront_origin_access_control.images[0].id}"
    )
    (ordered,) = distribution["dynamic"]
    behaviours = [
        *distribution["default_cache_behavior"],
        *ordered["ordered_cache_behavior"]["content"],
    ]
    assert ordered["ordered_cache_behavior"]["for_each"] == "${local.cloudfront_signed_paths}"
    for behaviour in behaviours:
        assert behaviour["compress"] is False
        assert behaviour["trusted_key_groups"] == ["${aws_cloudfront_key_group.signing[0].id}"]
        assert behaviour["allowed_methods"] == ["GET", "HEAD"]
        assert behaviour["cache_policy_id"] == "${aws_cloudfront_cache_policy.signed_images[0].id}"
    (key,) = resources["aws_cloudfront_cache_policy.signed_images"][
        "parameters_in_cache_key_and_forwarded_to_origin"
    ]
    assert key["headers_config"] == [{"header_behavior": "none"}]
    assert key["cookies_config"] == [{"cookie_behavior": "none"}]
    assert key["query_strings_config"] == [
        {
            "query_string_behavior": "whitelist",
            "query_strings": [{"items": "${local.cloudfront_query_keys}"}],
        }
    ]
    oac = resources["aws_cloudfront_origin_access_control.images"]
    assert (oac["signing_behavior"], oac["signing_protocol"]) == ("always", "sigv4")
    # The bucket lets the service principal read only on behalf of this distribution.
    (statement,) = blocks("data")["aws_iam_policy_document.images_cloudfront"]["statement"]
    assert statement["actions"] == ["s3:GetObject"]
    assert statement["principals"] == [
        {"type": "Service", "identifiers": ["cloudfront.amazonaws.com"]}
    ]
    assert statement["condition"] == [
        {
            "test": "StringEquals",
            "variable": "AWS:SourceArn",
            "values": ["${aws_cloudfront_distribution.images[0].arn}"],
        }
    ]


def test_cloudfront_is_off_on_localstack_and_its_key_never_in_terraform() -> None:
    with (INFRA / "localstack.tfvars").open() as handle:
        tfvars = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
    assert tfvars["enable_cloudfront"] is False
    assert blocks("variable")["enable_cloudfront"]["default"] is True
    module = blocks("module")["api"]
    assert module["image_url_signer"] == '${var.enable_cloudfront ? "cloudfront" : "s3"}'
    # Only the parameter's name reaches the functions, and no private key is a variable.
    assert "cloudfront_key_parameter_prefix" in module["cloudfront_private_key_parameter"]
    assert not any("private_key_pem" in name for name in blocks("variable"))
    stage = json.loads((CHALICE / "config.json").read_text())["stages"]["localstack"]
    env = stage["environment_variables"]
    for name in (
        "IMAGE_URL_SIGNER",
        "CLOUDFRONT_DOMAIN",
        "CLOUDFRONT_KEY_PAIR_ID",
        "CLOUDFRONT_PRIVATE_KEY_PARAMETER",
    ):
        assert env[name] == f"${{var.{name.lower()}}}"
        assert blocks("module")["api"][name.lower()]
