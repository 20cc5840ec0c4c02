"""Make Chalice's generated ``chalice.tf.json`` work with Terraform >= 1.5 and AWS provider 5.x.

``chalice package --pkg-format terraform`` (Chalice 1.34) writes a Terraform module that
pins ``required_version < 1.4.0`` and the AWS provider ``< 5``, declares a
``null_data_source`` (deprecated, and the only reason it needs the ``null`` provider), and
names the API Gateway stage on ``aws_api_gateway_deployment`` (deprecated in provider 5.x,
removed in 6.x). :func:`make_compatible` rewrites exactly those parts, and lets Terraform
choose the API's authorizer:

1. ``terraform``: ``required_version`` becomes ``>= 1.5.0``, the AWS provider
   ``>= 5.0, < 6.0``, and the ``null`` provider requirement is dropped.
2. ``data.null_data_source``: removed (Chalice writes it but never references it; a
   reference would make this step fail rather than emit a broken module).
3. Each ``aws_api_gateway_deployment`` with a ``stage_name`` is split into the deployment
   (redeployed when the Swagger body changes, through ``triggers``) and an
   ``aws_api_gateway_stage`` of the same name; the outputs that read the deployment's
   ``invoke_url`` read the stage's instead, and a ``StageName`` output names the stage
   (``infra/api.tf`` sets its throttling).
4. Authorizer by variable, when the functions' ``AUTH_MODE`` is ``${var.auth_mode}``:
   ``app.py`` then declares its Chalice authorizer (``jwt_auth``) on the ``/images``
   routes, and this step derives three Swagger bodies from the one Chalice wrote:
   ``none`` (no authorizer), ``jwt`` (as written) and ``cognito`` (the same routes behind
   a Cognito user pool authorizer for ``${var.cognito_user_pool_arn}``). The REST API
   gets ``local.chalice_api_swaggers[var.auth_mode]``, so the one Terraform variable that
   sets the functions' ``AUTH_MODE`` also picks what API Gateway enforces. Every body
   carries API Gateway's own answers (:data:`GATEWAY_RESPONSES`: 401 and 403 from the
   authorizer and 429 in Chalice's error shape, and the default 4XX and 5XX) with CORS
   headers from ``${var.cors_allow_origins}`` (:data:`GATEWAY_CORS_ORIGIN`), merged in by
   Terraform. They are in the body, not ``aws_api_gateway_gateway_response`` resources:
   a body import (``PutRestApi`` in overwrite mode, on every change of the app) resets
   gateway responses the body does not hold, and the deployment is redeployed exactly
   when the body changes (its ``triggers``), so they can never be missing or stale. The
   module's ``GatewayResponses`` output shows them as API Gateway gets them.
5. S3 notifications (``@app.on_s3_event``): Chalice names the bucket it read at import
   (``chalicelib.storage.upload_bucket_name()``: a placeholder, or the stage's
   ``BUCKET_NAME`` text) and keys the ``aws_s3_bucket_notification`` by that name, which
   is no valid Terraform name when it is ``${var.bucket_name}``. Each notification is
   pointed at the ``BUCKET_NAME`` environment value of the functions it invokes (the
   bucket ``infra/`` passes in, ``${var.bucket_name}``), keyed ``<variable>_notify``
   (notifications of one bucket merged: S3 keeps one configuration per bucket), and
   ``depends_on`` the ``aws_lambda_permission`` resources that let S3 invoke those
   functions, whose ``source_arn`` names the same bucket. Without that ordering S3
   refuses the configuration ("Unable to validate the following destination
   configurations"). Filters (``filter_prefix``, events) are kept as written.
6. Schedules (``@app.schedule``): each ``aws_cloudwatch_event_rule`` is named after the
   function it targets (``<app>-<stage>-<function>``, as ``chalice deploy`` names it)
   instead of Chalice's bare ``<function>-event``, so two stages in one account do not
   share (and overwrite) one rule.
7. Every ``${var.NAME}`` written in the Chalice config (environment variables, the IAM
   policy files) becomes a declared string ``variable``, so the generated directory is a
   module the root configuration in ``infra/`` passes bucket, table and limits into.

CLI: ``python -m scripts.package_terraform infra/chalice/chalice.tf.json`` rewrites the
file in place (``--output PATH`` writes elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

REQUIRED_TERRAFORM = ">= 1.5.0"
REQUIRED_AWS_PROVIDER = ">= 5.0, < 6.0"
AUTH_MODE_REFERENCE = "${var.auth_mode}"
COGNITO_AUTHORIZER = "cognito_user_pool"
COGNITO_USER_POOL_ARN = "${var.cognito_user_pool_arn}"
#: Headers the app puts on every response (``app.SECURITY_HEADERS``), as API Gateway
#: response parameters, so the gateway's own answers carry them too.
_NOSNIFF = {"gatewayresponse.header.X-Content-Type-Options": "'nosniff'"}
#: API Gateway's own error answers, in Chalice's ``{"Code", "Message"}`` shape.
GATEWAY_RESPONSES: dict[str, Any] = {
    "UNAUTHORIZED": {
        "statusCode": 401,
        "responseParameters": {
            "gatewayresponse.header.WWW-Authenticate": "'Bearer'",
            **_NOSNIFF,
        },
        "responseTemplates": {
            "application/json": json.dumps(
                {
                    "Code": "UnauthorizedError",
                    "Message": "Authorization: a valid bearer token is required",
                }
            )
        },
    },
    "ACCESS_DENIED": {
        "statusCode": 403,
        "responseParameters": dict(_NOSNIFF),
        "responseTemplates": {
            "application/json": json.dumps(
                {
                    "Code": "ForbiddenError",
                    "Message": "Authorization: the token does not allow this request",
                }
            )
        },
    },
    "THROTTLED": {
        "statusCode": 429,
        "responseParameters": dict(_NOSNIFF),
        "responseTemplates": {
            "application/json": json.dumps(
                {"Code": "TooManyRequestsError", "Message": "too many requests, retry later"}
            )
        },
    },
    # Every other answer of the gateway's own (unknown route, body too large, integration
    # timeout, ...): its status and message as API Gateway writes them, with the headers.
    "DEFAULT_4XX": {"responseParameters": dict(_NOSNIFF)},
    "DEFAULT_5XX": {"responseParameters": dict(_NOSNIFF)},
}
#: The module input that lists the allowed origins (comma-separated).
CORS_VARIABLE = "cors_allow_origins"
#: The ``Access-Control-Allow-Origin`` of the gateway's own answers, a Terraform
#: expression over the module's ``cors_allow_origins`` (comma-separated, as the functions'
#: ``CORS_ALLOW_ORIGINS``): ``*`` when listed; else the first origin listed (a gateway
#: response cannot choose among several per request, and echoing the request's
#: ``Origin`` would allow every origin); empty (no origins): no CORS headers at all.
GATEWAY_CORS_ORIGIN = (
    '${contains(split(",", var.cors_allow_origins), "*") ? "*" '
    ': split(",", var.cors_allow_origins)[0]}'
)
#: The CORS headers of every gateway response, as the app sends them
#: (``chalicelib.cors``): ``Vary: Origin`` unless any origin is allowed.
GATEWAY_CORS_HEADERS = (
    "${{for name, value in {"
    '"gatewayresponse.header.Access-Control-Allow-Origin" = '
    "format(\"'%s'\", local.chalice_gateway_cors_origin), "
    '"gatewayresponse.header.Vary" = "\'Origin\'"'
    '} : name => value if local.chalice_gateway_cors_origin != "" '
    '&& (local.chalice_gateway_cors_origin != "*" || name != "gatewayresponse.header.Vary")}}'
)
#: The gateway responses as API Gateway gets them: :data:`GATEWAY_RESPONSES`, each with
#: :data:`GATEWAY_CORS_HEADERS` merged into its response parameters (also the module's
#: ``GatewayResponses`` output).
GATEWAY_RESPONSES_WITH_CORS = (
    "${{for type, response in jsondecode(local.chalice_gateway_responses) : type => merge("
    "response, {responseParameters = merge("
    "response.responseParameters, local.chalice_gateway_cors_headers)})}}"
)
#: The REST API's body: the Swagger of ``var.auth_mode`` plus the gateway responses.
API_SWAGGER = (
    "${jsonencode(merge(jsondecode(local.chalice_api_swaggers[var.auth_mode]), "
    '{"x-amazon-apigateway-gateway-responses" = local.chalice_gateway_answers}))}'
)
_VARIABLE_REFERENCE = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}")
_FUNCTION_REFERENCE = re.compile(r"^\$\{aws_lambda_function\.([A-Za-z0-9_-]+)\.arn\}$")
_RULE_REFERENCE = re.compile(r"^\$\{aws_cloudwatch_event_rule\.([A-Za-z0-9_-]+)\.name\}$")
#: The environment variable that names the functions' bucket (``chalicelib.config``).
BUCKET_VARIABLE = "BUCKET_NAME"
S3_PRINCIPAL = "s3.amazonaws.com"
S3_BUCKET_ARN = "arn:${data.aws_partition.chalice.partition}:s3:::"


class TemplateError(ValueError):
    """The generated template is not in the shape this step knows how to rewrite."""


def make_compatible(template: dict[str, Any]) -> dict[str, Any]:
    """Return a rewritten copy of a Chalice Terraform template; ``template`` is left unchanged.

    Args:
        template: the parsed ``chalice.tf.json``: a dict with ``resource``, ``data``,
            ``locals``, ``terraform`` and ``output`` keys, as Chalice writes it.

    Returns:
        The template with the changes listed in the module docstring applied.

    Raises:
        TemplateError: the template has no ``terraform`` block, something references
            ``null_data_source`` (removing it would leave a dangling reference), a
            function's ``AUTH_MODE`` is set to something other than ``${var.auth_mode}``,
            or it is and the routes carry no single Chalice authorizer; an S3
            notification invokes something other than this module's functions, or
            functions without (or with different) ``BUCKET_NAME``; an event rule's
            targets are not exactly one of this module's functions.
    """
    result = copy.deepcopy(template)
    _update_requirements(result)
    _drop_null_data_source(result)
    _split_api_gateway_stages(result)
    _swagger_by_auth_mode(result)
    _point_notifications_at_the_bucket(result)
    _name_event_rules_after_functions(result)
    _declare_variables(result)
    return result


def _update_requirements(template: dict[str, Any]) -> None:
    terraform = template.get("terraform")
    if not isinstance(terraform, dict):
        raise TemplateError("chalice.tf.json has no 'terraform' block")
    terraform["required_version"] = REQUIRED_TERRAFORM
    providers = terraform.setdefault("required_providers", {})
    providers.pop("null", None)
    providers["aws"] = {"source": "hashicorp/aws", "version": REQUIRED_AWS_PROVIDER}


def _drop_null_data_source(template: dict[str, Any]) -> None:
    data = template.get("data", {})
    data.pop("null_data_source", None)
    if not data:
        template.pop("data", None)
    if "null_data_source" in json.dumps(template):
        raise TemplateError("chalice.tf.json references null_data_source; cannot drop it")


def _split_api_gateway_stages(template: dict[str, Any]) -> None:
    resources = template.get("resource", {})
    deployments: dict[str, dict[str, Any]] = resources.get("aws_api_gateway_deployment", {})
    for name, deployment in deployments.items():
        stage_name = deployment.pop("stage_name", None)
        if stage_name is None:
            continue
        deployment.pop("stage_description", None)
        deployment["triggers"] = {"redeployment": "${md5(local.chalice_api_swagger)}"}
        resources.setdefault("aws_api_gateway_stage", {})[name] = {
            "stage_name": stage_name,
            "rest_api_id": deployment["rest_api_id"],
            "deployment_id": f"${{aws_api_gateway_deployment.{name}.id}}",
        }
        old = f"${{aws_api_gateway_deployment.{name}.invoke_url}}"
        new = f"${{aws_api_gateway_stage.{name}.invoke_url}}"
        for output in template.get("output", {}).values():
            if output.get("value") == old:
                output["value"] = new
        template.setdefault("output", {})["StageName"] = {
            "value": f"${{aws_api_gateway_stage.{name}.stage_name}}"
        }


def _swagger_by_auth_mode(template: dict[str, Any]) -> None:
    functions: dict[str, Any] = template.get("resource", {}).get("aws_lambda_function", {})
    modes = {
        name: function.get("environment", {}).get("variables", {}).get("AUTH_MODE")
        for name, function in functions.items()
    }
    if all(mode is None for mode in modes.values()):
        return
    wrong = sorted(name for name, mode in modes.items() if mode != AUTH_MODE_REFERENCE)
    if wrong:
        raise TemplateError(
            f"AUTH_MODE of {', '.join(wrong)} must be {AUTH_MODE_REFERENCE!r}: the variable "
            "that picks the API's authorizer must also tell the app which one it is"
        )
    local_values = template.get("locals", {})
    if "chalice_api_swaggers" in local_values:
        return  # already rewritten
    swagger: dict[str, Any] = json.loads(local_values["chalice_api_swagger"])
    custom = [
        name
        for name, definition in swagger.get("securityDefinitions", {}).items()
        if definition.get("x-amazon-apigateway-authtype") == "custom"
    ]
    if len(custom) != 1:
        raise TemplateError(
            f"AUTH_MODE is {AUTH_MODE_REFERENCE!r} but the routes carry {len(custom)} Chalice "
            "authorizers, not one: app.py declares jwt_auth when AUTH_MODE is a Terraform "
            "reference"
        )
    variants = {
        "none": _with_authorizer(swagger, custom[0], None),
        "jwt": copy.deepcopy(swagger),
        "cognito": _with_authorizer(
            swagger,
            custom[0],
            (
                COGNITO_AUTHORIZER,
                {
                    "in": "header",
                    "type": "apiKey",
                    "name": "Authorization",
                    "x-amazon-apigateway-authtype": "cognito_user_pools",
                    "x-amazon-apigateway-authorizer": {
                        "type": "cognito_user_pools",
                        "providerARNs": [COGNITO_USER_POOL_ARN],
                    },
                },
            ),
        ),
    }
    local_values["chalice_api_swaggers"] = {
        mode: json.dumps(variant) for mode, variant in variants.items()
    }
    # The origins the gateway's answers allow: the module's input even when the app's
    # config does not name it.
    template.setdefault("variable", {}).setdefault(CORS_VARIABLE, {"type": "string"})
    local_values["chalice_gateway_responses"] = json.dumps(GATEWAY_RESPONSES)
    local_values["chalice_gateway_cors_origin"] = GATEWAY_CORS_ORIGIN
    local_values["chalice_gateway_cors_headers"] = GATEWAY_CORS_HEADERS
    local_values["chalice_gateway_answers"] = GATEWAY_RESPONSES_WITH_CORS
    local_values["chalice_api_swagger"] = API_SWAGGER
    template.setdefault("output", {})["GatewayResponses"] = {
        "value": "${local.chalice_gateway_answers}"
    }


def _with_authorizer(
    swagger: dict[str, Any], current: str, replacement: tuple[str, dict[str, Any]] | None
) -> dict[str, Any]:
    """A copy of ``swagger`` where the operations secured by ``current`` are secured by
    ``replacement`` (a name and its security definition) instead, or by nothing (None)."""
    result = copy.deepcopy(swagger)
    definitions: dict[str, Any] = result.pop("securityDefinitions")
    del definitions[current]
    if replacement is not None:
        definitions[replacement[0]] = replacement[1]
    if definitions:
        result["securityDefinitions"] = definitions
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue  # a path's "parameters" list
            requirements = operation.pop("security", [])
            kept = [requirement for requirement in requirements if current not in requirement]
            if replacement is not None and len(kept) < len(requirements):
                kept.append({replacement[0]: []})
            if kept:
                operation["security"] = kept
    return result


def _function_of(reference: object, functions: dict[str, Any], what: str) -> str:
    """The name of the module's function that ``reference`` names.

    ``reference`` must be ``${aws_lambda_function.NAME.arn}`` with NAME in ``functions``.

    Raises:
        TemplateError: it is anything else (``what`` names the referring resource).
    """
    match = _FUNCTION_REFERENCE.match(reference) if isinstance(reference, str) else None
    if match is None or match[1] not in functions:
        raise TemplateError(f"{what} invokes {reference!r}, not a function of this module")
    return match[1]


def _notification_key(bucket: str) -> str:
    """A valid Terraform resource name for the notification of ``bucket``."""
    variable = _VARIABLE_REFERENCE.fullmatch(bucket)
    base = variable[1] if variable else re.sub(r"[^A-Za-z0-9_-]", "_", bucket)
    return f"{base if re.match(r'[A-Za-z_]', base) else '_' + base}_notify"


def _point_notifications_at_the_bucket(template: dict[str, Any]) -> None:
    resources: dict[str, Any] = template.get("resource", {})
    notifications: dict[str, Any] = resources.get("aws_s3_bucket_notification", {})
    if not notifications:
        return
    functions: dict[str, Any] = resources.get("aws_lambda_function", {})
    permissions: dict[str, Any] = resources.get("aws_lambda_permission", {})
    merged: dict[str, dict[str, Any]] = {}
    for name, notification in notifications.items():
        targets = {
            _function_of(entry.get("lambda_function_arn"), functions, f"notification {name}")
            for entry in notification.get("lambda_function", [])
        }
        buckets = {
            functions[target].get("environment", {}).get("variables", {}).get(BUCKET_VARIABLE)
            for target in targets
        }
        if len(buckets) != 1 or None in buckets:
            raise TemplateError(
                f"notification {name}: the functions it invokes ({', '.join(sorted(targets))}) "
                f"must share one {BUCKET_VARIABLE}, got {sorted(map(str, buckets))}"
            )
        (bucket,) = buckets
        assert isinstance(bucket, str)
        key = _notification_key(bucket)
        target = merged.setdefault(key, {"bucket": bucket, "lambda_function": []})
        for entry in notification.get("lambda_function", []):
            if entry not in target["lambda_function"]:
                target["lambda_function"].append(entry)
        depends_on: list[str] = target.setdefault("depends_on", [])
        for permission_name, permission in sorted(permissions.items()):
            if permission.get("principal") != S3_PRINCIPAL:
                continue
            invoked = _FUNCTION_REFERENCE.match(str(permission.get("function_name", "")))
            if invoked is None or invoked[1] not in targets:
                continue
            permission["source_arn"] = f"{S3_BUCKET_ARN}{bucket}"
            address = f"aws_lambda_permission.{permission_name}"
            if address not in depends_on:
                depends_on.append(address)
        for entry in notification.get("depends_on", []):
            if entry not in depends_on:
                depends_on.append(entry)
    for key, notification in merged.items():
        if not notification["depends_on"]:
            raise TemplateError(
                f"notification {key}: no aws_lambda_permission lets S3 invoke its functions"
            )
    resources["aws_s3_bucket_notification"] = merged


def _name_event_rules_after_functions(template: dict[str, Any]) -> None:
    resources: dict[str, Any] = template.get("resource", {})
    rules: dict[str, Any] = resources.get("aws_cloudwatch_event_rule", {})
    functions: dict[str, Any] = resources.get("aws_lambda_function", {})
    targets: dict[str, list[str]] = {}
    for name, target in resources.get("aws_cloudwatch_event_target", {}).items():
        rule = _RULE_REFERENCE.match(str(target.get("rule", "")))
        if rule is None:
            continue
        targets.setdefault(rule[1], []).append(
            _function_of(target.get("arn"), functions, f"event target {name}")
        )
    for name, rule in rules.items():
        invoked = targets.get(name, [])
        if len(invoked) != 1:
            raise TemplateError(f"event rule {name} targets {len(invoked)} functions, not one")
        rule["name"] = functions[invoked[0]]["function_name"]


def _declare_variables(template: dict[str, Any]) -> None:
    names = sorted(set(_VARIABLE_REFERENCE.findall(json.dumps(template))))
    if not names:
        return
    variables = template.setdefault("variable", {})
    for name in names:
        variables.setdefault(name, {"type": "string"})


def main(argv: list[str] | None = None) -> int:
    """Rewrite a ``chalice.tf.json`` file; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path, help="chalice.tf.json written by chalice package")
    parser.add_argument("--output", type=Path, help="where to write (default: in place)")
    args = parser.parse_args(argv)
    try:
        template = json.loads(args.path.read_text())
        rewritten = make_compatible(template)
    except (OSError, json.JSONDecodeError, TemplateError) as exc:
        print(f"package_terraform: {args.path}: {exc}", file=sys.stderr)
        return 1
    (args.output or args.path).write_text(json.dumps(rewritten, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
