"""scripts/package_terraform.py: the post-process step over Chalice's chalice.tf.json.

The input is real Chalice output: a tiny app (no requirements, so no download) packaged
with the installed Chalice, so a Chalice upgrade that changes the template shows up here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.package_terraform import (
    API_SWAGGER,
    COGNITO_USER_POOL_ARN,
    GATEWAY_RESPONSES,
    REQUIRED_AWS_PROVIDER,
    REQUIRED_TERRAFORM,
    TemplateError,
    main,
    make_compatible,
)

TINY_APP = """
from chalice import Chalice

app = Chalice(app_name="tiny")


@app.route("/health")
def health():
    return {"status": "ok"}
"""

TINY_CONFIG = {
    "version": "2.0",
    "app_name": "tiny",
    "stages": {
        "deploy": {
            "api_gateway_stage": "api",
            "autogen_policy": False,
            "iam_policy_file": "policy.json",
            "environment_variables": {"BUCKET_NAME": "${var.bucket_name}", "FIXED": "1"},
        }
    },
}

TINY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "${var.bucket_arn}/*"}
    ],
}


# Like app.py: the authorizer is on the routes when AUTH_MODE is a Terraform reference.
TINY_APP_WITH_AUTH = """
import os
from chalice import AuthResponse, Chalice

app = Chalice(app_name="tiny")


@app.authorizer(ttl_seconds=0)
def jwt_auth(auth_request):
    return AuthResponse(routes=["*"], principal_id="someone")


secured = jwt_auth if os.environ["AUTH_MODE"].startswith("${") else None


@app.route("/health")
def health():
    return {"status": "ok"}


@app.route("/images/{image_id}", methods=["GET", "DELETE"], authorizer=secured)
def image(image_id):
    return {}
"""


def _with_auth_mode(config: dict[str, Any], auth_mode: str) -> dict[str, Any]:
    result = copy.deepcopy(config)
    result["stages"]["deploy"]["environment_variables"]["AUTH_MODE"] = auth_mode
    return result


def _package(
    tmp_path_factory: pytest.TempPathFactory, app_source: str, config: dict[str, Any]
) -> dict[str, Any]:
    """chalice.tf.json as ``chalice package --pkg-format terraform`` writes it."""
    chalice = shutil.which("chalice", path=str(Path(sys.executable).parent))
    if chalice is None:
        pytest.skip("chalice CLI is not installed next to this Python (pip install chalice)")
    project = tmp_path_factory.mktemp("tiny")
    (project / ".chalice").mkdir()
    (project / "app.py").write_text(app_source)
    (project / "requirements.txt").write_text("")
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    (project / ".chalice" / "policy.json").write_text(json.dumps(TINY_POLICY))
    subprocess.run(
        [chalice, "package", "--pkg-format", "terraform", "--stage", "deploy", "out"],
        cwd=project,
        check=True,
        capture_output=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    template: dict[str, Any] = json.loads((project / "out" / "chalice.tf.json").read_text())
    return template


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny app without authorizers, as Chalice packages it."""
    return _package(tmp_path_factory, TINY_APP, TINY_CONFIG)


@pytest.fixture(scope="module")
def generated_with_auth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny app whose AUTH_MODE is ``${var.auth_mode}``, as Chalice packages it."""
    return _package(
        tmp_path_factory, TINY_APP_WITH_AUTH, _with_auth_mode(TINY_CONFIG, "${var.auth_mode}")
    )


def test_generated_template_still_has_what_the_step_fixes(generated: dict[str, Any]) -> None:
    # If Chalice stops writing these, the post-process step may no longer be needed.
    assert "< 1.4.0" in generated["terraform"]["required_version"]
    assert "< 5" in generated["terraform"]["required_providers"]["aws"]["version"]
    assert "null_data_source" in generated["data"]
    assert generated["resource"]["aws_api_gateway_deployment"]["rest_api"]["stage_name"] == "api"


def test_version_pins_allow_current_terraform_and_provider_5(generated: dict[str, Any]) -> None:
    terraform = make_compatible(generated)["terraform"]
    assert terraform["required_version"] == REQUIRED_TERRAFORM == ">= 1.5.0"
    assert terraform["required_providers"] == {
        "aws": {"source": "hashicorp/aws", "version": REQUIRED_AWS_PROVIDER}
    }
    assert REQUIRED_AWS_PROVIDER == ">= 5.0, < 6.0"


def test_null_data_source_is_gone(generated: dict[str, Any]) -> None:
    result = make_compatible(generated)
    assert "null" not in json.dumps(result["terraform"])
    assert "null_data_source" not in json.dumps(result)
    assert set(result["data"]) == {"aws_caller_identity", "aws_partition", "aws_region"}


def test_a_reference_to_null_data_source_is_refused(generated: dict[str, Any]) -> None:
    template = copy.deepcopy(generated)
    template["output"]["App"] = {"value": "${data.null_data_source.chalice.outputs.app}"}
    with pytest.raises(TemplateError, match="null_data_source"):
        make_compatible(template)


def test_api_stage_is_its_own_resource(generated: dict[str, Any]) -> None:
    result = make_compatible(generated)
    deployment = result["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert "stage_name" not in deployment
    assert "stage_description" not in deployment
    assert deployment["triggers"] == {"redeployment": "${md5(local.chalice_api_swagger)}"}
    assert deployment["lifecycle"] == {"create_before_destroy": True}
    assert result["resource"]["aws_api_gateway_stage"]["rest_api"] == {
        "stage_name": "api",
        "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
        "deployment_id": "${aws_api_gateway_deployment.rest_api.id}",
    }
    assert result["output"]["EndpointURL"] == {
        "value": "${aws_api_gateway_stage.rest_api.invoke_url}"
    }
    assert result["output"]["StageName"] == {
        "value": "${aws_api_gateway_stage.rest_api.stage_name}"
    }
    assert "aws_api_gateway_deployment" not in json.dumps(result["output"])


def test_config_variables_become_module_variables(generated: dict[str, Any]) -> None:
    result = make_compatible(generated)
    # bucket_name from the environment, bucket_arn from inside the policy JSON string
    assert result["variable"] == {
        "bucket_arn": {"type": "string"},
        "bucket_name": {"type": "string"},
    }
    function = result["resource"]["aws_lambda_function"]["api_handler"]
    assert function["environment"]["variables"] == {
        "BUCKET_NAME": "${var.bucket_name}",
        "FIXED": "1",
    }
    policy = json.loads(result["resource"]["aws_iam_role_policy"]["api_handler_role"]["policy"])
    assert policy == TINY_POLICY


def test_input_is_not_modified_and_step_is_idempotent(generated: dict[str, Any]) -> None:
    before = copy.deepcopy(generated)
    once = make_compatible(generated)
    assert generated == before
    assert make_compatible(once) == once


def test_template_without_terraform_block_is_refused(generated: dict[str, Any]) -> None:
    template = copy.deepcopy(generated)
    del template["terraform"]
    with pytest.raises(TemplateError, match="terraform"):
        make_compatible(template)


def test_cli_rewrites_in_place(generated: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "chalice.tf.json"
    path.write_text(json.dumps(generated))
    assert main([str(path)]) == 0
    assert json.loads(path.read_text()) == make_compatible(generated)


def test_cli_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chalice.tf.json"
    path.write_text(json.dumps({"resource": {}}))
    assert main([str(path)]) == 1
    assert "no 'terraform' block" in capsys.readouterr().err
    assert json.loads(path.read_text()) == {"resource": {}}


def _swaggers(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        mode: json.loads(body) for mode, body in result["locals"]["chalice_api_swaggers"].items()
    }


def _security(swagger: dict[str, Any]) -> dict[str, Any]:
    """``{"METHOD /path": security}`` of every operation."""
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, operations in swagger["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
    }


def _without_auth(swagger: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(swagger)
    result.pop("securityDefinitions", None)
    for operations in result["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    return result


def test_without_auth_mode_the_swagger_is_left_alone(generated: dict[str, Any]) -> None:
    result = make_compatible(generated)
    assert result["locals"] == generated["locals"]


def test_the_api_takes_the_swagger_of_var_auth_mode(generated_with_auth: dict[str, Any]) -> None:
    result = make_compatible(generated_with_auth)

    assert result["locals"]["chalice_api_swagger"] == API_SWAGGER
    rest_api = result["resource"]["aws_api_gateway_rest_api"]["rest_api"]
    assert rest_api["body"] == "${local.chalice_api_swagger}"
    assert set(_swaggers(result)) == {"none", "jwt", "cognito"}
    # The same variable is the functions' AUTH_MODE, and now a module input.
    for function in result["resource"]["aws_lambda_function"].values():
        assert function["environment"]["variables"]["AUTH_MODE"] == "${var.auth_mode}"
    assert {"auth_mode", "cognito_user_pool_arn", "cors_allow_origins"} <= set(result["variable"])


def test_the_three_swaggers_differ_only_in_the_authorizer(
    generated_with_auth: dict[str, Any],
) -> None:
    chalice_swagger = json.loads(generated_with_auth["locals"]["chalice_api_swagger"])
    swaggers = _swaggers(make_compatible(generated_with_auth))
    jwt_swagger, none, cognito = swaggers["jwt"], swaggers["none"], swaggers["cognito"]

    # The gateway responses are merged in by Terraform (see the CORS tests below).
    assert jwt_swagger == chalice_swagger
    assert jwt_swagger["securityDefinitions"]["jwt_auth"]["x-amazon-apigateway-authorizer"] == {
        "type": "token",
        "authorizerUri": "${aws_lambda_function.jwt_auth.invoke_arn}",
        "authorizerResultTtlInSeconds": 0,
    }
    assert _security(jwt_swagger) == {
        "GET /health": None,
        "GET /images/{image_id}": [{"jwt_auth": []}],
        "DELETE /images/{image_id}": [{"jwt_auth": []}],
    }
    assert "securityDefinitions" not in none
    assert set(_security(none).values()) == {None}
    assert cognito["securityDefinitions"] == {
        "cognito_user_pool": {
            "in": "header",
            "type": "apiKey",
            "name": "Authorization",
            "x-amazon-apigateway-authtype": "cognito_user_pools",
            "x-amazon-apigateway-authorizer": {
                "type": "cognito_user_pools",
                "providerARNs": [COGNITO_USER_POOL_ARN],
            },
        }
    }
    assert _security(cognito) == {
        "GET /health": None,
        "GET /images/{image_id}": [{"cognito_user_pool": []}],
        "DELETE /images/{image_id}": [{"cognito_user_pool": []}],
    }
    assert _without_auth(none) == _without_auth(cognito) == _without_auth(jwt_swagger)


def test_gateway_errors_have_chalice_error_shape() -> None:
    for name, status, code in [
        ("UNAUTHORIZED", 401, "UnauthorizedError"),
        ("ACCESS_DENIED", 403, "ForbiddenError"),
        ("THROTTLED", 429, "TooManyRequestsError"),
    ]:
        response = GATEWAY_RESPONSES[name]
        assert response["statusCode"] == status
        body = json.loads(response["responseTemplates"]["application/json"])
        assert set(body) == {"Code", "Message"} and body["Code"] == code
        # As every answer of the app (issue 9).
        headers = response["responseParameters"]
        assert headers["gatewayresponse.header.X-Content-Type-Options"] == "'nosniff'"


#: The gateway responses every body carries: the authorizer's 401 and 403, throttling's
#: 429, and every other answer of the gateway's own.
GATEWAY_RESPONSE_TYPES = {
    "UNAUTHORIZED",
    "ACCESS_DENIED",
    "THROTTLED",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
}
ALLOW_ORIGIN = "gatewayresponse.header.Access-Control-Allow-Origin"
VARY = "gatewayresponse.header.Vary"


def _api_body(template: dict[str, Any], tmp_path: Path, cors_allow_origins: str) -> Any:
    """The REST API body the packaged module gives API Gateway, as Terraform evaluates it
    for ``cors_allow_origins`` (``terraform console``; the Swagger variants are stubbed:
    they reference the module's resources, which a console without state cannot read)."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH (Terraform >= 1.5 evaluates the module's locals)")
    local_values = dict(template["locals"])
    local_values["chalice_api_swaggers"] = {
        mode: json.dumps({"swagger": "2.0", "info": {"title": mode}})
        for mode in ("none", "jwt", "cognito")
    }
    workdir = tmp_path / f"console-{len(list(tmp_path.iterdir()))}"
    workdir.mkdir()
    (workdir / "main.tf.json").write_text(
        json.dumps(
            {
                "variable": {
                    name: template["variable"][name] for name in ("auth_mode", "cors_allow_origins")
                },
                "locals": local_values,
            }
        )
    )
    result = subprocess.run(
        [
            terraform,
            "console",
            "-var",
            "auth_mode=jwt",
            "-var",
            f"cors_allow_origins={cors_allow_origins}",
        ],
        input="local.chalice_api_swagger",
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("cors_allow_origins", "expected"),
    [
        # Same origin only: no CORS header, as the app sends none.
        ("", {}),
        ("*", {ALLOW_ORIGIN: "'*'"}),
        ("https://app.example.com", {ALLOW_ORIGIN: "'https://app.example.com'", VARY: "'Origin'"}),
        # Several: the first listed (a gateway response cannot choose per request).
        (
            "https://app.example.com,http://localhost:8000",
            {ALLOW_ORIGIN: "'https://app.example.com'", VARY: "'Origin'"},
        ),
        ("https://app.example.com,*", {ALLOW_ORIGIN: "'*'"}),
    ],
    ids=["none", "any", "one", "several", "several-with-any"],
)
def test_gateway_responses_carry_the_cors_headers_of_cors_allow_origins(
    generated_with_auth: dict[str, Any],
    tmp_path: Path,
    cors_allow_origins: str,
    expected: dict[str, str],
) -> None:
    body = _api_body(make_compatible(generated_with_auth), tmp_path, cors_allow_origins)

    assert body["info"] == {"title": "jwt"}  # the Swagger of var.auth_mode
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == GATEWAY_RESPONSE_TYPES
    for name, response in responses.items():
        headers = response["responseParameters"]
        cors = {key: value for key, value in headers.items() if key in (ALLOW_ORIGIN, VARY)}
        assert cors == expected, name
        # Everything else as GATEWAY_RESPONSES says.
        assert {
            **response,
            "responseParameters": {k: v for k, v in headers.items() if k not in cors},
        } == GATEWAY_RESPONSES[name]


def test_auth_step_is_idempotent(generated_with_auth: dict[str, Any]) -> None:
    once = make_compatible(generated_with_auth)
    assert make_compatible(once) == once


def test_auth_mode_must_be_the_terraform_variable(generated_with_auth: dict[str, Any]) -> None:
    template = copy.deepcopy(generated_with_auth)
    function = template["resource"]["aws_lambda_function"]["api_handler"]
    function["environment"]["variables"]["AUTH_MODE"] = "jwt"
    with pytest.raises(
        TemplateError, match=r"AUTH_MODE of api_handler must be '\$\{var.auth_mode\}'"
    ):
        make_compatible(template)


def test_auth_mode_without_an_authorizer_is_refused(generated: dict[str, Any]) -> None:
    template = copy.deepcopy(generated)
    function = template["resource"]["aws_lambda_function"]["api_handler"]
    function["environment"]["variables"]["AUTH_MODE"] = "${var.auth_mode}"
    with pytest.raises(TemplateError, match="carry 0 Chalice authorizers"):
        make_compatible(template)


# Like app.py's on_upload_created and sweep: an S3 notification on a prefix and a schedule.
# ``BUCKET`` is what the app names at import: app.py reads BUCKET_NAME (which chalice
# package sets to the stage's "${var.bucket_name}"), or a placeholder when it is unset.
TINY_APP_WITH_EVENTS = """
import os
from chalice import Chalice, Rate

app = Chalice(app_name="tiny")
BUCKET = {bucket}


@app.route("/health")
def health():
    return {{"status": "ok"}}


@app.on_s3_event(bucket=BUCKET, events=["s3:ObjectCreated:*"], prefix="uploads/")
def on_upload_created(event):
    return None


@app.schedule(Rate(1, unit=Rate.HOURS))
def sweep(event):
    return None
"""


@pytest.fixture(scope="module", params=["from-environment", "placeholder"])
def generated_with_events(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The tiny app with an S3 notification and a schedule, as Chalice packages it.

    ``from-environment``: the bucket is ``BUCKET_NAME`` read at import (app.py's way);
    ``placeholder``: a fixed name the app used when the variable was unset.
    """
    bucket = 'os.environ["BUCKET_NAME"]' if request.param == "from-environment" else '"tiny-x"'
    return _package(tmp_path_factory, TINY_APP_WITH_EVENTS.format(bucket=bucket), TINY_CONFIG)


def test_chalice_emits_a_notification_without_ordering(
    generated_with_events: dict[str, Any],
) -> None:
    # What the step fixes: keyed by the import-time name, no depends_on, rule "sweep-event".
    resources = generated_with_events["resource"]
    ((key, notification),) = resources["aws_s3_bucket_notification"].items()
    assert key in ("${var.bucket_name}_notify", "tiny-x_notify")
    assert notification["bucket"] in ("${var.bucket_name}", "tiny-x")
    assert "depends_on" not in notification
    assert resources["aws_cloudwatch_event_rule"]["sweep-event"]["name"] == "sweep-event"


def test_the_notification_targets_the_module_bucket_after_its_permission(
    generated_with_events: dict[str, Any],
) -> None:
    resources = make_compatible(generated_with_events)["resource"]
    assert resources["aws_s3_bucket_notification"] == {
        "bucket_name_notify": {
            "bucket": "${var.bucket_name}",
            "lambda_function": [
                {
                    "events": ["s3:ObjectCreated:*"],
                    "lambda_function_arn": "${aws_lambda_function.on_upload_created.arn}",
                    "filter_prefix": "uploads/",
                }
            ],
            "depends_on": ["aws_lambda_permission.on_upload_created-s3event"],
        }
    }
    permission = resources["aws_lambda_permission"]["on_upload_created-s3event"]
    assert permission["principal"] == "s3.amazonaws.com"
    assert permission["function_name"] == "${aws_lambda_function.on_upload_created.arn}"
    assert (
        permission["source_arn"]
        == "arn:${data.aws_partition.chalice.partition}:s3:::${var.bucket_name}"
    )
    assert permission["source_account"] == "${data.aws_caller_identity.chalice.account_id}"
    assert "tiny-x" not in json.dumps(resources)


def test_the_schedule_is_named_after_its_function(generated_with_events: dict[str, Any]) -> None:
    resources = make_compatible(generated_with_events)["resource"]
    assert resources["aws_cloudwatch_event_rule"] == {
        "sweep-event": {
            "name": "tiny-deploy-sweep",
            "schedule_expression": "rate(1 hour)",
            "description": "",
        }
    }
    assert resources["aws_lambda_function"]["sweep"]["function_name"] == "tiny-deploy-sweep"
    assert resources["aws_cloudwatch_event_target"]["sweep-event"] == {
        "rule": "${aws_cloudwatch_event_rule.sweep-event.name}",
        "target_id": "sweep-event",
        "arn": "${aws_lambda_function.sweep.arn}",
    }
    permission = resources["aws_lambda_permission"]["sweep-event"]
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.sweep-event.arn}"


def test_event_steps_are_idempotent(generated_with_events: dict[str, Any]) -> None:
    once = make_compatible(generated_with_events)
    assert make_compatible(once) == once


def test_notifications_of_one_bucket_are_merged(generated_with_events: dict[str, Any]) -> None:
    template = copy.deepcopy(generated_with_events)
    notifications = template["resource"]["aws_s3_bucket_notification"]
    ((_key, notification),) = notifications.items()
    other = copy.deepcopy(notification)
    other["lambda_function"][0]["filter_prefix"] = "other/"
    notifications["another_notify"] = other
    result = make_compatible(template)["resource"]["aws_s3_bucket_notification"]
    assert list(result) == ["bucket_name_notify"]
    prefixes = [entry["filter_prefix"] for entry in result["bucket_name_notify"]["lambda_function"]]
    assert prefixes == ["uploads/", "other/"]


def test_a_notified_function_without_bucket_name_is_refused(
    generated_with_events: dict[str, Any],
) -> None:
    template = copy.deepcopy(generated_with_events)
    function = template["resource"]["aws_lambda_function"]["on_upload_created"]
    del function["environment"]["variables"]["BUCKET_NAME"]
    with pytest.raises(TemplateError, match="must share one BUCKET_NAME"):
        make_compatible(template)


def test_a_notification_without_its_permission_is_refused(
    generated_with_events: dict[str, Any],
) -> None:
    template = copy.deepcopy(generated_with_events)
    del template["resource"]["aws_lambda_permission"]["on_upload_created-s3event"]
    with pytest.raises(TemplateError, match="no aws_lambda_permission lets S3 invoke"):
        make_compatible(template)


def test_a_notification_of_a_foreign_function_is_refused(
    generated_with_events: dict[str, Any],
) -> None:
    template = copy.deepcopy(generated_with_events)
    ((notification),) = template["resource"]["aws_s3_bucket_notification"].values()
    notification["lambda_function"][0]["lambda_function_arn"] = "arn:aws:lambda:x:1:function:y"
    with pytest.raises(TemplateError, match="not a function of this module"):
        make_compatible(template)


def test_the_real_app_packages_its_notification_and_schedule(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """app.py itself, stage localstack: what `make package` feeds infra/.

    A copy of app.py, chalicelib/ and .chalice/ with no requirements, so nothing is
    downloaded or vendored (tests/deploy packages the real requirements).
    """
    chalice = shutil.which("chalice", path=str(Path(sys.executable).parent))
    if chalice is None:
        pytest.skip("chalice CLI is not installed next to this Python (pip install chalice)")
    root = Path(__file__).resolve().parents[2]
    project = tmp_path_factory.mktemp("real")
    shutil.copy(root / "app.py", project / "app.py")
    shutil.copytree(root / "chalicelib", project / "chalicelib")
    shutil.copytree(root / ".chalice", project / ".chalice")
    (project / "requirements.txt").write_text("")
    out = project / "out"
    subprocess.run(
        [chalice, "package", "--pkg-format", "terraform", "--stage", "localstack", str(out)],
        cwd=project,
        check=True,
        capture_output=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    result = make_compatible(json.loads((out / "chalice.tf.json").read_text()))
    resources = result["resource"]
    (notification,) = resources["aws_s3_bucket_notification"].values()
    assert notification["bucket"] == "${var.bucket_name}"
    assert [entry["filter_prefix"] for entry in notification["lambda_function"]] == ["uploads/"]
    assert notification["depends_on"] == ["aws_lambda_permission.on_upload_created-s3event"]
    rules = resources["aws_cloudwatch_event_rule"]
    assert {rule["name"]: rule["schedule_expression"] for rule in rules.values()} == {
        "image-service-localstack-sweep": "rate(1 hour)"
    }
    handlers = {f["function_name"]: f["handler"] for f in resources["aws_lambda_function"].values()}
    assert handlers["image-service-localstack-on_upload_created"] == "app.on_upload_created"
    assert handlers["image-service-localstack-sweep"] == "app.sweep"
    # Each function its own role and policy (.chalice/config.json lambda_functions).
    policies = {
        name: json.loads(policy["policy"])
        for name, policy in resources["aws_iam_role_policy"].items()
    }
    assert len({json.dumps(p, sort_keys=True) for p in policies.values()}) == len(policies) == 4
