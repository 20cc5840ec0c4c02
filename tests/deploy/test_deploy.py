"""The deploy path, end to end, without Docker: Terraform + the packaged Lambda against moto.

What LocalStack would do in `make deploy` is done here by moto's server on loopback:
``terraform validate`` and ``tflocal plan`` of the whole configuration; ``tflocal apply``
of everything moto can create (bucket with its lifecycle rules and CORS, table with its
TTL, log groups, IAM roles and policies, the API, authorizer, upload handler and sweep
Lambda functions, the bucket's notification of ``uploads/`` with the permission S3
invokes through, the sweep's schedule rule, target and permission). moto's API Gateway
refuses Chalice's Swagger 2.0 body, so the REST API, its deployment, stage and
throttling settings, and the API's invoke permissions are planned, not applied; so is
the TLS-only bucket policy.

The stack is deployed with ``auth_mode = "jwt"``. The deployed functions are read back
from moto, the ``deployment.zip`` Terraform uploaded (same SHA-256 as moto reports) is
unpacked into a fresh directory, and its handlers are invoked in separate Python
processes that see only the zip, boto3 (as the Lambda runtime provides it) and each
function's environment: the ``jwt_auth`` authorizer with TOKEN events, and the API with
API Gateway REST proxy events that carry the principal the authorizer returned, as API
Gateway passes it on. The upload handler gets an S3 event for an object posted with the
presigned POST that ``POST /uploads`` returned; the sweep a scheduled event.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import boto3
import pytest
import requests

from chalicelib.auth import issue_token
from chalicelib.config import JwtSettings
from chalicelib.schema import TTL_ATTRIBUTE, table_definition
from chalicelib.storage import KEY_PREFIX, RENDITION_PREFIX, UPLOAD_PREFIX
from chalicelib.urls import DISPOSITION_PARAMETER
from scripts.cloudfront_keys import fingerprint
from scripts.package_terraform import API_SWAGGER, GATEWAY_RESPONSES
from tests.deploy.conftest import (
    CLOUDFRONT_PUBLIC_PEM,
    CORS_ORIGINS,
    INFRA,
    REGION,
    SWEEP_GRACE_SECONDS,
    Terraform,
    not_applicable_on_moto,
)

pytestmark = pytest.mark.deploy

EVENTS = Path(__file__).resolve().parents[1] / "events"
RUNTIME = Path(__file__).resolve().parent / "lambda_runtime.py"
# What the Lambda Python runtime provides besides the standard library.
LAMBDA_RUNTIME_MODULES = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "six",
    "urllib3",
)
EXPECTED_PLAN = {
    "aws_s3_bucket.images",
    "aws_s3_bucket_public_access_block.images",
    "aws_s3_bucket_ownership_controls.images",
    "aws_s3_bucket_server_side_encryption_configuration.images",
    "aws_s3_bucket_cors_configuration.images[0]",
    "aws_s3_bucket_policy.images[0]",
    "aws_s3_bucket_lifecycle_configuration.images",
    "aws_cloudfront_origin_access_control.images[0]",
    "aws_cloudfront_cache_policy.signed_images[0]",
    "aws_cloudfront_key_group.signing[0]",
    "aws_cloudfront_distribution.images[0]",
    "aws_dynamodb_table.metadata",
    "aws_cloudwatch_log_group.api",
    "aws_cloudwatch_log_group.authorizer",
    "aws_cloudwatch_log_group.upload_handler",
    "aws_cloudwatch_log_group.sweep",
    "aws_api_gateway_method_settings.throttling",
    "module.api.aws_iam_role.api_handler_role",
    "module.api.aws_iam_role_policy.api_handler_role",
    "module.api.aws_lambda_function.api_handler",
    "module.api.aws_lambda_permission.rest_api_invoke",
    "module.api.aws_iam_role.jwt_auth_role",
    "module.api.aws_iam_role_policy.jwt_auth_role",
    "module.api.aws_lambda_function.jwt_auth",
    "module.api.aws_lambda_permission.jwt_auth_invoke",
    "module.api.aws_iam_role.on_upload_created_role",
    "module.api.aws_iam_role_policy.on_upload_created_role",
    "module.api.aws_lambda_function.on_upload_created",
    "module.api.aws_lambda_permission.on_upload_created-s3event",
    "module.api.aws_s3_bucket_notification.bucket_name_notify",
    "module.api.aws_iam_role.sweep_role",
    "module.api.aws_iam_role_policy.sweep_role",
    "module.api.aws_lambda_function.sweep",
    "module.api.aws_lambda_permission.sweep-event",
    "module.api.aws_cloudwatch_event_rule.sweep-event",
    "module.api.aws_cloudwatch_event_target.sweep-event",
    "module.api.aws_api_gateway_rest_api.rest_api",
    "module.api.aws_api_gateway_deployment.rest_api",
    "module.api.aws_api_gateway_stage.rest_api",
}
FUNCTION_NAME = "image-service-localstack"
AUTHORIZER_NAME = f"{FUNCTION_NAME}-jwt_auth"
UPLOAD_HANDLER_NAME = f"{FUNCTION_NAME}-on_upload_created"
SWEEP_NAME = f"{FUNCTION_NAME}-sweep"


def client(service: str, endpoint: str) -> Any:
    """A boto3 client for moto's server."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def load_event(name: str, image_id: str | None = None, **headers: str) -> dict[str, Any]:
    """An event from tests/events/, with IMAGE_ID replaced and ``headers`` added."""
    text = (EVENTS / name).read_text()
    if image_id is not None:
        text = text.replace("IMAGE_ID", image_id)
    event: dict[str, Any] = json.loads(text)
    for header, value in headers.items():
        header = header.replace("_", "-")
        event["headers"][header] = value
        event["multiValueHeaders"][header] = [value]
    return event


def uploaded_png() -> bytes:
    """The PNG inside the multipart upload event's base64 body."""
    body = base64.b64decode(load_event("apigw_rest_post_images_multipart.json")["body"])
    start = body.index(b"\x89PNG")
    return body[start : body.index(b"IEND") + 8]


def test_terraform_files_are_formatted(terraform: Terraform) -> None:
    result = subprocess.run(
        [terraform.terraform, "fmt", "-check", "-diff", "-no-color", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt infra/ would change:\n{result.stdout}"


def test_validate_full_configuration(terraform: Terraform) -> None:
    result = json.loads(terraform.run("validate", "-json", "-no-color").stdout)
    assert result["valid"], result
    # The post-process step leaves nothing deprecated for provider 5.x to warn about.
    assert result["diagnostics"] == [], result["diagnostics"]


def test_full_configuration_plans(plan: dict[str, Any]) -> None:
    planned = {change["address"] for change in plan["resource_changes"]}
    assert planned >= EXPECTED_PLAN, EXPECTED_PLAN - planned
    assert all(
        c["change"]["actions"] == ["create"]
        for c in plan["resource_changes"]
        if c["mode"] == "managed"  # the bucket policy document is read once the bucket exists
    )
    stage = next(
        c
        for c in plan["resource_changes"]
        if c["address"] == "module.api.aws_api_gateway_stage.rest_api"
    )
    assert stage["change"]["after"]["stage_name"] == "api"
    rest_api = next(
        c
        for c in plan["resource_changes"]
        if c["address"] == "module.api.aws_api_gateway_rest_api.rest_api"
    )
    assert "multipart/form-data" in rest_api["change"]["after"]["binary_media_types"]
    throttling = next(
        c
        for c in plan["resource_changes"]
        if c["address"] == "aws_api_gateway_method_settings.throttling"
    )
    assert throttling["change"]["after"]["method_path"] == "*/*"
    (settings,) = throttling["change"]["after"]["settings"]
    assert (settings["throttling_rate_limit"], settings["throttling_burst_limit"]) == (50, 100)
    assert plan["planned_values"]["outputs"]["auth_mode"]["value"] == "jwt"
    # require_tls defaults to true: the TLS-only bucket policy is planned (not applied on moto).
    assert "aws_s3_bucket_policy.images[0]" in planned


def _planned(plan: dict[str, Any], address: str) -> dict[str, Any]:
    """The planned ``after`` values of ``address`` (unknowns are absent)."""
    change = next(c for c in plan["resource_changes"] if c["address"] == address)
    after: dict[str, Any] = change["change"]["after"]
    return after


def test_cloudfront_is_planned_in_front_of_the_private_bucket(plan: dict[str, Any]) -> None:
    key = fingerprint(CLOUDFRONT_PUBLIC_PEM)
    public_key = _planned(plan, f'aws_cloudfront_public_key.signing["{key}"]')
    assert public_key["encoded_key"].strip() == CLOUDFRONT_PUBLIC_PEM.strip()
    oac = _planned(plan, "aws_cloudfront_origin_access_control.images[0]")
    assert (oac["origin_access_control_origin_type"], oac["signing_behavior"]) == ("s3", "always")
    distribution = _planned(plan, "aws_cloudfront_distribution.images[0]")
    assert distribution["http_version"] == "http2and3"
    assert distribution["price_class"] == "PriceClass_100"
    behaviours = distribution["ordered_cache_behavior"]
    assert [b["path_pattern"] for b in behaviours] == [f"{KEY_PREFIX}*", f"{RENDITION_PREFIX}*"]
    assert all(
        b["compress"] is False for b in [*behaviours, *distribution["default_cache_behavior"]]
    )
    (origin,) = distribution["origin"]
    assert origin["origin_id"] == "images"  # the bucket (known once created), through the OAC
    policy = _planned(plan, "aws_cloudfront_cache_policy.signed_images[0]")
    (parameters,) = policy["parameters_in_cache_key_and_forwarded_to_origin"]
    (queries,) = parameters["query_strings_config"]
    assert queries["query_string_behavior"] == "whitelist"
    assert sorted(queries["query_strings"][0]["items"]) == sorted(
        ["Expires", "Signature", "Key-Pair-Id", DISPOSITION_PARAMETER]
    )
    # The API signs with that key, read from SSM by name (the function's environment is
    # known once the distribution exists; the name is known now).
    outputs = plan["planned_values"]["outputs"]
    assert outputs["cloudfront_private_key_parameter"]["value"] == (
        f"/image-service/localstack/cloudfront-key/{key}"
    )
    api = plan["configuration"]["root_module"]["module_calls"]["api"]["expressions"]
    assert "var.enable_cloudfront" in api["image_url_signer"]["references"]
    assert "aws_cloudfront_distribution.images" in api["cloudfront_domain"]["references"]
    assert not any("PRIVATE KEY" in json.dumps(value) for value in api.values())
    assert "aws_s3_bucket_policy.images[0]" in {c["address"] for c in plan["resource_changes"]}
    # The bucket policy (read once the distribution exists) joins the TLS statement and
    # the distribution's: both documents are in the configuration.
    documents = {
        resource["address"]
        for resource in plan["configuration"]["root_module"]["resources"]
        if resource["mode"] == "data"
    }
    assert {
        "data.aws_iam_policy_document.images",
        "data.aws_iam_policy_document.images_tls_only",
        "data.aws_iam_policy_document.images_cloudfront",
    } <= documents


def _swagger_security(packaged_infra: Path) -> dict[str, dict[str, Any]]:
    """``{mode: {"METHOD /path": security}}`` of the Swagger bodies the module chooses from."""
    template = json.loads((packaged_infra / "chalice" / "chalice.tf.json").read_text())
    assert template["locals"]["chalice_api_swagger"] == API_SWAGGER
    result = {}
    for mode, body in template["locals"]["chalice_api_swaggers"].items():
        swagger = json.loads(body)
        result[mode] = {
            f"{method.upper()} {path}": operation.get("security")
            for path, operations in swagger["paths"].items()
            for method, operation in operations.items()
            if isinstance(operation, dict)
        }
    return result


def test_the_packaged_api_secures_exactly_the_images_and_uploads_routes(
    packaged_infra: Path,
) -> None:
    security = _swagger_security(packaged_infra)
    assert set(security) == {"none", "jwt", "cognito"}
    for mode, authorizer in [("none", None), ("jwt", "jwt_auth"), ("cognito", "cognito_user_pool")]:
        for operation, requirement in security[mode].items():
            method, path = operation.split(" ", 1)
            # OPTIONS is the CORS preflight (app.cors_preflight): browsers send no token.
            protected = (
                path.startswith(("/images", "/uploads")) and method != "OPTIONS" and authorizer
            )
            assert requirement == ([{authorizer: []}] if protected else None), (mode, operation)
        assert any(operation.endswith(" /health") for operation in security[mode])
        assert "POST /uploads" in security[mode]


def test_the_gateways_own_answers_carry_the_cors_headers(terraform: Terraform) -> None:
    """API Gateway's own 401/403/429 and default 4XX/5XX answers, as the deployed body
    gives them (moto's API Gateway refuses the body, so Terraform evaluates it, with the
    deploy's ``cors_allow_origins``): the first listed origin, ``Vary: Origin``, and the
    response types and bodies of ``GATEWAY_RESPONSES``. They are in the REST API's body,
    which the deployment's trigger hashes: a change redeploys the stage."""
    result = subprocess.run(
        [terraform.terraform, "console", "-no-color"],
        input="jsonencode(module.api.GatewayResponses)",
        cwd=terraform.workdir,
        env=terraform.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(json.loads(result.stdout))

    assert (
        set(answers)
        == set(GATEWAY_RESPONSES)
        >= {
            "UNAUTHORIZED",
            "ACCESS_DENIED",
            "THROTTLED",
            "DEFAULT_4XX",
            "DEFAULT_5XX",
        }
    )
    for name, answer in answers.items():
        assert answer["responseParameters"] == {
            **GATEWAY_RESPONSES[name]["responseParameters"],
            "gatewayresponse.header.Access-Control-Allow-Origin": f"'{CORS_ORIGINS[0]}'",
            "gatewayresponse.header.Vary": "'Origin'",
        }, name
    template = json.loads((terraform.workdir / "chalice" / "chalice.tf.json").read_text())
    deployment = template["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert deployment["triggers"] == {"redeployment": "${md5(local.chalice_api_swagger)}"}
    assert "local.chalice_gateway_answers" in template["locals"]["chalice_api_swagger"]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"auth_mode": "cognito"}, "needs cognito_user_pool_arn"),
        ({"auth_mode": "jwt", "jwt_secret": ""}, "needs jwt_secret"),
    ],
    ids=["cognito-without-pool", "jwt-without-secret"],
)
def test_plan_refuses_an_auth_mode_without_what_it_needs(
    terraform: Terraform, variables: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [
            terraform.terraform,
            "plan",
            "-input=false",
            "-no-color",
            "-refresh=false",
            *(f"-var={name}={value}" for name, value in variables.items()),
        ],
        cwd=terraform.workdir,
        env=terraform.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr


def test_apply_creates_everything_but_the_rest_api(applied: Terraform) -> None:
    state = json.loads(applied.run("show", "-json").stdout)
    resources = state["values"]["root_module"].get("resources", [])
    for child in state["values"]["root_module"].get("child_modules", []):
        resources += child["resources"]
    created = {r["address"] for r in resources if r["mode"] == "managed"}
    applicable = {address for address in EXPECTED_PLAN if not not_applicable_on_moto(address)}
    assert created >= applicable, applicable - created


def test_bucket_is_private_encrypted_and_allows_browser_get_post(applied: Terraform) -> None:
    s3 = client("s3", applied.moto_endpoint)
    bucket = applied.outputs["bucket_name"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    (cors,) = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert sorted(cors["AllowedMethods"]) == ["GET", "HEAD", "POST"]
    # The same variable as the functions' CORS_ALLOW_ORIGINS.
    assert sorted(cors["AllowedOrigins"]) == sorted(CORS_ORIGINS)


def test_bucket_drops_abandoned_multipart_uploads(applied: Terraform) -> None:
    s3 = client("s3", applied.moto_endpoint)
    bucket = applied.outputs["bucket_name"]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    rule = rules["abort-incomplete-multipart-uploads"]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def _planned_output(plan: dict[str, Any], name: str) -> Any:
    """An output's value in the full plan (a targeted apply leaves some unevaluated)."""
    return plan["planned_values"]["outputs"][name]["value"]


def test_bucket_expires_direct_uploads_left_under_the_upload_prefix(
    applied: Terraform, plan: dict[str, Any]
) -> None:
    s3 = client("s3", applied.moto_endpoint)
    bucket = applied.outputs["bucket_name"]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    rule = rules["expire-direct-uploads"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": UPLOAD_PREFIX}
    # UPLOAD_EXPIRES_SECONDS 3600 rounded up to whole days.
    assert rule["Expiration"] == {"Days": 1}
    assert _planned_output(plan, "upload_expiration_days") == 1


def test_table_expires_items_by_their_ttl_attribute(applied: Terraform) -> None:
    dynamodb = client("dynamodb", applied.moto_endpoint)
    ttl = dynamodb.describe_time_to_live(TableName=applied.outputs["table_name"])
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": TTL_ATTRIBUTE,
    }


def test_bucket_notifies_the_upload_handler_of_uploads(
    applied: Terraform, plan: dict[str, Any]
) -> None:
    s3 = client("s3", applied.moto_endpoint)
    lambda_ = client("lambda", applied.moto_endpoint)
    bucket = applied.outputs["bucket_name"]
    handler_arn = lambda_.get_function_configuration(FunctionName=UPLOAD_HANDLER_NAME)[
        "FunctionArn"
    ]
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
    (notification,) = configuration["LambdaFunctionConfigurations"]
    assert notification["LambdaFunctionArn"] == handler_arn
    assert notification["Events"] == ["s3:ObjectCreated:*"]
    assert notification["Filter"] == {
        "Key": {"FilterRules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}
    }
    assert not configuration.get("QueueConfigurations")
    assert not configuration.get("TopicConfigurations")
    assert _planned_output(plan, "upload_handler_function_name") == UPLOAD_HANDLER_NAME


def _resource_policy(applied: Terraform, function_name: str) -> list[dict[str, Any]]:
    policy = client("lambda", applied.moto_endpoint).get_policy(FunctionName=function_name)
    statements: list[dict[str, Any]] = json.loads(policy["Policy"])["Statement"]
    return statements


def test_only_the_bucket_may_invoke_the_upload_handler(applied: Terraform) -> None:
    (statement,) = _resource_policy(applied, UPLOAD_HANDLER_NAME)
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    condition = statement["Condition"]
    assert condition["ArnLike"]["AWS:SourceArn"] == (
        f"arn:aws:s3:::{applied.outputs['bucket_name']}"
    )
    assert condition["StringEquals"]["AWS:SourceAccount"] == "123456789012"


def test_the_sweep_runs_hourly_on_its_schedule(applied: Terraform, plan: dict[str, Any]) -> None:
    events = client("events", applied.moto_endpoint)
    lambda_ = client("lambda", applied.moto_endpoint)
    sweep_arn = lambda_.get_function_configuration(FunctionName=SWEEP_NAME)["FunctionArn"]
    (rule,) = events.list_rules(NamePrefix=SWEEP_NAME)["Rules"]
    assert rule["Name"] == SWEEP_NAME  # named per stage, not Chalice's bare "sweep-event"
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert rule["State"] == "ENABLED"
    (target,) = events.list_targets_by_rule(Rule=SWEEP_NAME)["Targets"]
    assert target["Arn"] == sweep_arn
    (statement,) = _resource_policy(applied, SWEEP_NAME)
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]
    assert _planned_output(plan, "sweep_function_name") == SWEEP_NAME


def test_table_is_created_from_the_same_schema(applied: Terraform) -> None:
    dynamodb = client("dynamodb", applied.moto_endpoint)
    name = applied.outputs["table_name"]
    table = dynamodb.describe_table(TableName=name)["Table"]
    expected = table_definition(name)
    assert table["KeySchema"] == expected["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    indexes = {
        i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        i["IndexName"]: (i["KeySchema"], i["Projection"])
        for i in expected["GlobalSecondaryIndexes"]
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    backups = dynamodb.describe_continuous_backups(TableName=name)
    recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"


@pytest.fixture(scope="module")
def function(applied: Terraform) -> dict[str, Any]:
    """The deployed API function's configuration, read back from moto."""
    config: dict[str, Any] = client("lambda", applied.moto_endpoint).get_function_configuration(
        FunctionName=FUNCTION_NAME
    )
    return config


@pytest.fixture(scope="module")
def authorizer_function(applied: Terraform) -> dict[str, Any]:
    """The deployed ``jwt_auth`` authorizer function's configuration, read back from moto."""
    config: dict[str, Any] = client("lambda", applied.moto_endpoint).get_function_configuration(
        FunctionName=AUTHORIZER_NAME
    )
    return config


def test_function_environment_comes_from_terraform(
    applied: Terraform, function: dict[str, Any]
) -> None:
    env = function["Environment"]["Variables"]
    assert env["BUCKET_NAME"] == applied.outputs["bucket_name"]
    assert env["TABLE_NAME"] == applied.outputs["table_name"]
    assert env["TOKEN_SECRET"] == applied.env["TF_VAR_token_secret"]
    assert env["S3_PUBLIC_ENDPOINT_URL"] == applied.moto_endpoint
    assert env["MAX_IMAGE_BYTES"] == "52428800"
    assert env["MAX_IMAGE_PIXELS"] == "50000000"
    assert env["URL_EXPIRES_SECONDS"] == "900"
    assert env["URL_CACHE_WINDOW_SECONDS"] == "3600"
    # Applied without CloudFront (moto has no cache policies): S3 signing, no key.
    assert env["IMAGE_URL_SIGNER"] == "s3"
    assert env["CLOUDFRONT_DOMAIN"] == env["CLOUDFRONT_PRIVATE_KEY_PARAMETER"] == ""
    assert env["MAX_DECODE_BYTES"] == str(256 * 1024 * 1024)
    assert env["MAX_DECODED_PIXELS"] == "1000000000"
    assert env["MAX_ANIMATION_FRAMES"] == "300"
    assert env["RENDITION_SIZES"] == "320,640,1080"
    assert env["UPLOAD_EXPIRES_SECONDS"] == "3600"
    assert env["UPLOAD_LEASE_SECONDS"] == "180"
    assert env["CORS_ALLOW_ORIGINS"] == ",".join(CORS_ORIGINS)
    assert env["SWEEP_GRACE_SECONDS"] == str(SWEEP_GRACE_SECONDS)
    assert env["AUTH_MODE"] == "jwt"
    assert env["JWT_SECRET"] == applied.env["TF_VAR_jwt_secret"]
    assert (env["JWT_ISSUER"], env["JWT_AUDIENCE"]) == ("image-service", "image-service")
    assert not any("${" in value for value in env.values()), env
    assert function["Handler"] == "app.app"
    assert function["Runtime"] == "python3.11"


def test_authorizer_function_shares_the_environment(
    function: dict[str, Any], authorizer_function: dict[str, Any]
) -> None:
    assert authorizer_function["Environment"] == function["Environment"]
    assert authorizer_function["Handler"] == "app.jwt_auth"
    assert authorizer_function["CodeSha256"] == function["CodeSha256"]


def _granted(iam: Any, function: dict[str, Any]) -> dict[str, set[str]]:
    """``{resource: actions}`` the function's role allows (asserts one inline policy)."""
    role = function["Role"].rsplit("/", 1)[1]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    assert len(names) == 1
    document = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
    granted: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            granted.setdefault(resource, set()).update(
                [actions] if isinstance(actions, str) else actions
            )
    return granted


def test_authorizer_policy_only_writes_its_own_logs(
    applied: Terraform, authorizer_function: dict[str, Any]
) -> None:
    iam = client("iam", applied.moto_endpoint)
    log_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{AUTHORIZER_NAME}:*"
    assert _granted(iam, authorizer_function) == {
        log_arn: {"logs:CreateLogStream", "logs:PutLogEvents"}
    }


def test_function_policy_is_least_privilege(applied: Terraform, function: dict[str, Any]) -> None:
    granted = _granted(client("iam", applied.moto_endpoint), function)
    bucket_arn = f"arn:aws:s3:::{applied.outputs['bucket_name']}"
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{applied.outputs['table_name']}"
    log_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{FUNCTION_NAME}:*"
    table_actions = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
        "dynamodb:DescribeTable",
    }
    objects = {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
    assert granted == {
        log_arn: {"logs:CreateLogStream", "logs:PutLogEvents"},
        bucket_arn: {"s3:ListBucket"},
        f"{bucket_arn}/{KEY_PREFIX}*": objects,
        f"{bucket_arn}/{UPLOAD_PREFIX}*": objects,  # the presigned POST is signed with it
        f"{bucket_arn}/{RENDITION_PREFIX}*": objects,
        table_arn: table_actions,
        f"{table_arn}/index/*": table_actions,
        # The CloudFront signing keys' SSM parameters (names only reach the function).
        f"arn:aws:ssm:{REGION}:123456789012:parameter/image-service/localstack/cloudfront-key/*": {
            "ssm:GetParameter"
        },
    }


@pytest.fixture(scope="module")
def upload_handler_function(applied: Terraform) -> dict[str, Any]:
    """The deployed S3 notification handler's configuration, read back from moto."""
    config: dict[str, Any] = client("lambda", applied.moto_endpoint).get_function_configuration(
        FunctionName=UPLOAD_HANDLER_NAME
    )
    return config


@pytest.fixture(scope="module")
def sweep_function(applied: Terraform) -> dict[str, Any]:
    """The deployed sweep's configuration, read back from moto."""
    config: dict[str, Any] = client("lambda", applied.moto_endpoint).get_function_configuration(
        FunctionName=SWEEP_NAME
    )
    return config


def test_event_functions_share_the_code_and_environment(
    function: dict[str, Any],
    upload_handler_function: dict[str, Any],
    sweep_function: dict[str, Any],
) -> None:
    for deployed, handler_name in [
        (upload_handler_function, "app.on_upload_created"),
        (sweep_function, "app.sweep"),
    ]:
        assert deployed["Handler"] == handler_name
        assert deployed["CodeSha256"] == function["CodeSha256"]
        assert deployed["Environment"] == function["Environment"]
        assert deployed["Role"] != function["Role"]  # a role (and policy) of its own
    assert (upload_handler_function["Timeout"], upload_handler_function["MemorySize"]) == (
        120,
        2048,
    )
    assert (sweep_function["Timeout"], sweep_function["MemorySize"]) == (300, 512)


def test_upload_handler_policy_allows_ingest_only(
    applied: Terraform, upload_handler_function: dict[str, Any]
) -> None:
    granted = _granted(client("iam", applied.moto_endpoint), upload_handler_function)
    bucket_arn = f"arn:aws:s3:::{applied.outputs['bucket_name']}"
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{applied.outputs['table_name']}"
    log_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{UPLOAD_HANDLER_NAME}:*"
    assert granted == {
        log_arn: {"logs:CreateLogStream", "logs:PutLogEvents"},
        bucket_arn: {"s3:ListBucket"},
        f"{bucket_arn}/{UPLOAD_PREFIX}*": {"s3:GetObject", "s3:DeleteObject"},
        f"{bucket_arn}/{KEY_PREFIX}*": {"s3:PutObject", "s3:DeleteObject"},
        f"{bucket_arn}/{RENDITION_PREFIX}*": {"s3:PutObject", "s3:DeleteObject"},
        table_arn: {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    }


def test_sweep_policy_is_the_only_one_with_scan(
    applied: Terraform, sweep_function: dict[str, Any]
) -> None:
    granted = _granted(client("iam", applied.moto_endpoint), sweep_function)
    bucket_arn = f"arn:aws:s3:::{applied.outputs['bucket_name']}"
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{applied.outputs['table_name']}"
    log_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{SWEEP_NAME}:*"
    objects = {"s3:GetObject", "s3:DeleteObject"}
    assert granted == {
        log_arn: {"logs:CreateLogStream", "logs:PutLogEvents"},
        bucket_arn: {"s3:ListBucket"},
        f"{bucket_arn}/{KEY_PREFIX}*": objects | {"s3:PutObject"},
        f"{bucket_arn}/{UPLOAD_PREFIX}*": objects,
        f"{bucket_arn}/{RENDITION_PREFIX}*": objects | {"s3:PutObject"},
        table_arn: {
            "dynamodb:Scan",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        },
    }


def _runtime_dir(path: Path) -> Path:
    """A directory with only what the Lambda runtime provides: boto3 and its dependencies."""
    path.mkdir()
    for name in LAMBDA_RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (path / source.name).symlink_to(source)
    return path


class DeployedHandler:
    """The unpacked deployment.zip's handler, running in its own Python process."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def reply(self, event: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send one event; return ``{"response": ...}`` or ``{"error", "errorMessage", ...}``.

        Raises:
            AssertionError: the process died or ``timeout`` passed.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"no answer within {timeout}s to {json.dumps(event)[:200]}"
        line = self.process.stdout.readline()
        assert line, f"handler process exited {self.process.wait()}; its stderr is above"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def invoke(self, event: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send one event; return the handler's response.

        Raises:
            AssertionError: the handler raised, the process died, or ``timeout`` passed.
        """
        reply = self.reply(event, timeout)
        assert "error" not in reply, reply.get("error")
        response: dict[str, Any] = reply["response"]
        return response


def _start_handler(
    applied: Terraform, function: dict[str, Any], root: Path
) -> Iterator[DeployedHandler]:
    """Run ``function``'s handler from the uploaded deployment.zip, with its environment.

    Like LocalStack, the process gets an AWS_ENDPOINT_URL of its own (``localhost``), and
    the function's S3_PUBLIC_ENDPOINT_URL (``127.0.0.1``) is what presigned URLs must use.
    """
    archive = applied.workdir / "chalice" / "deployment.zip"
    digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    assert function["CodeSha256"] == digest, "moto holds another zip than chalice package wrote"
    task_root = root / "task"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(task_root)
    runtime = _runtime_dir(root / "runtime")
    port = urlsplit(applied.moto_endpoint).port
    env = {
        **function["Environment"]["Variables"],
        "AWS_ENDPOINT_URL": f"http://localhost:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": function["FunctionName"],
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["MemorySize"]),
        "LAMBDA_TASK_ROOT": str(task_root),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            str(RUNTIME),
            str(task_root),
            str(runtime),
            function["Handler"],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=task_root,
    )
    yield DeployedHandler(process)
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def handler(
    applied: Terraform, function: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedHandler]:
    """The API function's handler (``app.app``)."""
    yield from _start_handler(applied, function, tmp_path_factory.mktemp("lambda"))


@pytest.fixture(scope="module")
def authorizer(
    applied: Terraform,
    authorizer_function: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DeployedHandler]:
    """The ``jwt_auth`` authorizer function's handler (``app.jwt_auth``)."""
    yield from _start_handler(applied, authorizer_function, tmp_path_factory.mktemp("authorizer"))


def bearer_token(applied: Terraform, user: str, **overrides: Any) -> str:
    """A token signed with the deployed JWT_SECRET (``overrides``: other settings or TTL)."""
    ttl = overrides.pop("ttl_seconds", 600)
    now = overrides.pop("now", None)
    settings = JwtSettings(**{"secret": applied.env["TF_VAR_jwt_secret"], **overrides})
    return issue_token(user, settings, ttl_seconds=ttl, now=now)


def _token_event(event: dict[str, Any], authorization: str) -> dict[str, Any]:
    """The TOKEN authorizer event API Gateway sends before ``event`` reaches the API."""
    context = event["requestContext"]
    method_arn = (
        f"arn:aws:execute-api:{REGION}:{context['accountId']}:{context['apiId']}/"
        f"{context['stage']}/{event['httpMethod']}{event['path']}"
    )
    return {"type": "TOKEN", "authorizationToken": authorization, "methodArn": method_arn}


def as_user(event: dict[str, Any], authorizer: DeployedHandler, token: str) -> dict[str, Any]:
    """``event`` after API Gateway ran the authorizer: allowed, principal in the context."""
    event["headers"]["Authorization"] = f"Bearer {token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    token_event = _token_event(event, f"Bearer {token}")
    answer = authorizer.invoke(token_event)
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    assert any(
        fnmatch.fnmatchcase(token_event["methodArn"], resource)
        for resource in statement["Resource"]
    ), statement
    event["requestContext"]["authorizer"] = {
        **answer["context"],
        "principalId": answer["principalId"],
        "integrationLatency": 1,
    }
    return event


def _json(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def test_deployed_handler_serves_the_api(
    applied: Terraform, handler: DeployedHandler, authorizer: DeployedHandler
) -> None:
    alice = bearer_token(applied, "alice")
    bucket = applied.outputs["bucket_name"]
    table = applied.outputs["table_name"]
    s3 = client("s3", applied.moto_endpoint)
    dynamodb = client("dynamodb", applied.moto_endpoint)
    public = urlsplit(applied.moto_endpoint)

    health = handler.invoke(load_event("apigw_rest_get_health.json"))
    assert (health["statusCode"], _json(health)) == (200, {"status": "ok"})

    upload = handler.invoke(
        as_user(load_event("apigw_rest_post_images_multipart.json"), authorizer, alice)
    )
    assert upload["statusCode"] == 201, upload
    record = _json(upload)
    image_id = record["image_id"]
    assert upload["headers"]["Location"] == f"/images/{image_id}"
    assert (record["user_id"], record["title"]) == ("alice", "Red square")
    assert record["tags"] == ["red", "shapes"]
    assert (record["content_type"], record["width"], record["height"]) == ("image/png", 4, 3)
    stored = s3.get_object(Bucket=bucket, Key=record["s3_key"])["Body"].read()
    assert stored == uploaded_png()

    listing = handler.invoke(as_user(load_event("apigw_rest_get_images.json"), authorizer, alice))
    assert listing["statusCode"] == 200, listing
    page = _json(listing)
    assert [item["image_id"] for item in page["items"]] == [image_id]
    assert urlsplit(page["items"][0]["url"]).netloc == public.netloc

    view = handler.invoke(
        as_user(load_event("apigw_rest_get_image.json", image_id), authorizer, alice)
    )
    assert view["statusCode"] == 200, view
    viewed = _json(view)
    # Valid at least the 120 s asked for, to the end of the cache window (3600 s) plus that.
    assert viewed["image_id"] == image_id and 120 <= viewed["expires_in"] <= 3600 + 120
    assert "X-Amz-Expires=3720&" in viewed["download_url"]
    # Signed for the public endpoint, not the one the function talks to: fetchable as is.
    assert urlsplit(viewed["download_url"]).netloc == public.netloc
    fetched = requests.get(viewed["download_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == uploaded_png()

    download = handler.invoke(
        as_user(load_event("apigw_rest_get_image_download.json", image_id), authorizer, alice)
    )
    assert download["statusCode"] == 302, download
    saved = requests.get(download["headers"]["Location"], timeout=10)
    assert saved.content == uploaded_png()
    assert "attachment" in saved.headers["Content-Disposition"]

    # The principal decides, not the X-User-Id header (alice's in this event).
    mallory = bearer_token(applied, "mallory")
    other = as_user(load_event("apigw_rest_delete_image.json", image_id), authorizer, mallory)
    assert handler.invoke(other)["statusCode"] == 403

    deleted = handler.invoke(
        as_user(load_event("apigw_rest_delete_image.json", image_id), authorizer, alice)
    )
    assert deleted["statusCode"] == 200, deleted
    assert _json(deleted) == {"message": "Image deleted", "image_id": image_id}
    gone = handler.invoke(
        as_user(load_event("apigw_rest_get_image.json", image_id), authorizer, alice)
    )
    assert gone["statusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Only the image's items go; the feed's month marker (FEEDMONTHS) may stay.
    items = dynamodb.scan(TableName=table)["Items"]
    assert not [item for item in items if image_id in json.dumps(item)], items


def _gallery_event(path: str, resource: str, **path_parameters: str) -> dict[str, Any]:
    """``GET path`` as API Gateway's ``api`` stage hands it to the function."""
    event = load_event("apigw_rest_get_health.json")
    event.update(path=path, resource=resource, pathParameters=path_parameters or None)
    event["requestContext"].update(path=f"/api{path}", resourcePath=resource)
    return event


def test_deployed_handler_serves_the_gallery_and_cors_preflights(
    applied: Terraform, handler: DeployedHandler
) -> None:
    page = handler.invoke(_gallery_event("/", "/"))
    assert page["statusCode"] == 200, page
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert '<base href="/api/">' in page["body"]  # relative URLs follow the stage prefix
    csp = page["headers"]["Content-Security-Policy"]
    public = urlsplit(applied.moto_endpoint)
    assert f"img-src 'self' http://{public.netloc}" in csp  # S3_PUBLIC_ENDPOINT_URL's origin
    script = handler.invoke(_gallery_event("/assets/app.js", "/assets/{name}", name="app.js"))
    assert script["statusCode"] == 200, script
    assert script["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
    assert "import { paint }" in script["body"]  # shipped in deployment.zip's chalicelib/web
    preflight = _gallery_event("/images", "/images")
    preflight["httpMethod"] = preflight["requestContext"]["httpMethod"] = "OPTIONS"
    answer = handler.invoke(preflight)
    assert answer["statusCode"] == 204, answer  # reaches the function, no authorizer


@pytest.mark.parametrize(
    ("authorization", "overrides"),
    [
        ("Bearer {token}", {"now": 1_700_000_000}),  # expired in 2023
        ("Bearer {token}", {"secret": "f" * 48}),  # forged: another key
        ("Bearer {token}", {"audience": "another-api"}),
        ("Bearer {token}", {"issuer": "someone-else"}),
        ("{token}", {}),  # not a Bearer credential
    ],
    ids=["expired", "forged", "wrong-audience", "wrong-issuer", "no-bearer-scheme"],
)
def test_deployed_authorizer_fails_unauthorized_for_a_bad_token(
    applied: Terraform,
    authorizer: DeployedHandler,
    authorization: str,
    overrides: dict[str, Any],
) -> None:
    token = bearer_token(applied, "alice", **overrides)
    event = load_event("apigw_rest_get_images.json")

    reply = authorizer.reply(_token_event(event, authorization.format(token=token)))

    # Lambda reports str(exception); API Gateway turns "Unauthorized" into a 401.
    assert reply.get("errorMessage") == "Unauthorized", reply


def test_deployed_api_refuses_a_request_the_authorizer_did_not_pass(
    handler: DeployedHandler,
) -> None:
    # Defense in depth: no principal in the context (the gateway skipped the authorizer).
    listing = handler.invoke(load_event("apigw_rest_get_images.json"))
    assert listing["statusCode"] == 401
    assert _json(listing) == {
        "Code": "UnauthorizedError",
        "Message": "Authorization: no authenticated principal",
    }


def test_events_are_api_gateway_rest_proxy_events() -> None:
    for path in sorted(EVENTS.glob("apigw_rest_*.json")):
        event = json.loads(path.read_text())
        assert event["requestContext"]["resourcePath"] == event["resource"], path.name
        assert event["requestContext"]["stage"] == "api", path.name
        assert {
            "httpMethod",
            "headers",
            "multiValueHeaders",
            "pathParameters",
            "multiValueQueryStringParameters",
            "body",
            "isBase64Encoded",
        } <= set(event)
    upload = load_event("apigw_rest_post_images_multipart.json")
    assert upload["isBase64Encoded"] is True
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")


# --- Direct uploads: the packaged S3 notification handler and the scheduled sweep -----


def api_event(
    method: str,
    path: str,
    resource: str | None = None,
    body: dict[str, Any] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``method path`` (JSON ``body``), built from the
    recorded ``GET /health`` event."""
    event = load_event("apigw_rest_get_health.json")
    resource = resource or path
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        pathParameters=path_parameters,
        body=None if body is None else json.dumps(body),
    )
    event["requestContext"].update(resourcePath=resource, httpMethod=method, path=f"/api{path}")
    if body is not None:
        event["headers"]["Content-Type"] = "application/json"
        event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    return event


def s3_event(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    """The event S3 invokes a notified Lambda with for a presigned POST to ``key``."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-21T10:30:00.000Z",
                "eventName": "ObjectCreated:Post",
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.10"},
                "responseElements": {"x-amz-request-id": "EXAMPLE123456789"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tf-s3-lambda-uploads",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    # S3 URL-encodes the key in events (Chalice's S3Event decodes it).
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def scheduled_event() -> dict[str, Any]:
    """The event EventBridge invokes the sweep with on its schedule."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-21T10:30:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/{SWEEP_NAME}"],
        "detail": {},
    }


@pytest.fixture(scope="module")
def upload_handler(
    applied: Terraform,
    upload_handler_function: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DeployedHandler]:
    """The S3 notification handler's process (``app.on_upload_created``)."""
    yield from _start_handler(
        applied, upload_handler_function, tmp_path_factory.mktemp("upload_handler")
    )


@pytest.fixture(scope="module")
def sweeper(
    applied: Terraform, sweep_function: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedHandler]:
    """The scheduled sweep's process (``app.sweep``)."""
    yield from _start_handler(applied, sweep_function, tmp_path_factory.mktemp("sweep"))


def start_direct_upload(
    handler: DeployedHandler, authorizer: DeployedHandler, token: str, data: bytes, title: str
) -> dict[str, Any]:
    """``POST /uploads`` through the deployed API, then the presigned POST of ``data``
    from this process (the client) to the URL and fields it returned."""
    started = handler.invoke(
        as_user(
            api_event(
                "POST",
                "/uploads",
                body={"title": title, "filename": f"{title}.png", "size_bytes": len(data)},
            ),
            authorizer,
            token,
        )
    )
    assert started["statusCode"] == 201, started
    upload: dict[str, Any] = _json(started)
    form = upload["upload"]
    posted = requests.post(
        form["url"],
        data=form["fields"],
        files={form["file_field"]: (f"{title}.png", data)},
        timeout=30,
    )
    assert posted.status_code in (200, 201, 204), posted.text
    return upload


def upload_status(
    handler: DeployedHandler, authorizer: DeployedHandler, token: str, upload_id: str
) -> dict[str, Any]:
    """``GET /uploads/{upload_id}`` through the deployed API."""
    event = api_event(
        "GET",
        f"/uploads/{upload_id}",
        resource="/uploads/{upload_id}",
        path_parameters={"upload_id": upload_id},
    )
    answer = handler.invoke(as_user(event, authorizer, token))
    assert answer["statusCode"] == 200, answer
    status: dict[str, Any] = _json(answer)
    return status


def test_deployed_s3_handler_ingests_an_object_posted_with_the_presigned_post(
    applied: Terraform,
    handler: DeployedHandler,
    authorizer: DeployedHandler,
    upload_handler: DeployedHandler,
) -> None:
    token = bearer_token(applied, "alice")
    bucket = applied.outputs["bucket_name"]
    s3 = client("s3", applied.moto_endpoint)
    data = uploaded_png()
    upload = start_direct_upload(handler, authorizer, token, data, "direct")
    key = upload["upload"]["fields"]["key"]
    assert key.startswith(UPLOAD_PREFIX)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert upload_status(handler, authorizer, token, upload["upload_id"])["status"] == "pending"

    event = s3_event(bucket, key, head["ContentLength"], head["ETag"])
    first = upload_handler.invoke(event)
    again = upload_handler.invoke(event)  # S3 delivers at least once

    assert first is None and again is None
    status = upload_status(handler, authorizer, token, upload["upload_id"])
    assert status["status"] == "ready", status
    record = status["image"]
    assert record["image_id"] == upload["image_id"]
    assert (record["user_id"], record["title"]) == ("alice", "direct")
    assert (record["content_type"], record["width"], record["height"]) == ("image/png", 4, 3)
    stored = s3.get_object(Bucket=bucket, Key=record["s3_key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == record["sha256"]
    for rendition in record["renditions"]:
        assert rendition["s3_key"].startswith(RENDITION_PREFIX)
        s3.head_object(Bucket=bucket, Key=rendition["s3_key"])
    # One upload, one image: the repeated event made no second one.
    mine = load_event("apigw_rest_get_images.json")
    mine["queryStringParameters"] = {"user_id": "alice", "limit": "100"}
    mine["multiValueQueryStringParameters"] = {"user_id": ["alice"], "limit": ["100"]}
    listing = handler.invoke(as_user(mine, authorizer, token))
    assert listing["statusCode"] == 200, listing
    ids = [item["image_id"] for item in _json(listing)["items"]]
    assert ids.count(upload["image_id"]) == 1


def test_deployed_sweep_finishes_a_lost_event_and_removes_orphans(
    applied: Terraform,
    handler: DeployedHandler,
    authorizer: DeployedHandler,
    sweeper: DeployedHandler,
) -> None:
    token = bearer_token(applied, "bob")
    bucket = applied.outputs["bucket_name"]
    s3 = client("s3", applied.moto_endpoint)
    # Bytes posted, the S3 event lost: the upload stays pending until the sweep.
    upload = start_direct_upload(handler, authorizer, token, uploaded_png(), "lost-event")
    orphans = [f"{KEY_PREFIX}orphan-{upload['image_id']}.png", f"{RENDITION_PREFIX}orphan/320.webp"]
    for key in orphans:
        s3.put_object(Bucket=bucket, Key=key, Body=b"left behind by a crash")

    # SWEEP_GRACE_SECONDS is 1 here: young things are left alone, so run the schedule's
    # invocation until they are old enough (bounded; each run is one bounded slice).
    deadline = time.monotonic() + 60
    while True:
        assert sweeper.invoke(scheduled_event(), timeout=120) is None
        status = upload_status(handler, authorizer, token, upload["upload_id"])
        remaining = [key for key in orphans if _exists(s3, bucket, key)]
        if (status["status"] == "ready" and not remaining) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert status["status"] == "ready", status
    assert status["image"]["image_id"] == upload["image_id"]
    assert remaining == []
    record = status["image"]
    s3.head_object(Bucket=bucket, Key=record["s3_key"])  # the finished image is kept


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True
