"""The deploy path, end to end, without Docker: Terraform + the packaged Lambda against moto.

What LocalStack would do in `make deploy` is done here by moto's server on loopback:
``terraform validate`` and ``tflocal plan`` of the whole configuration; ``tflocal apply``
of everything moto can create (bucket, table, log group, IAM role and policy, Lambda
function). moto's API Gateway refuses Chalice's Swagger 2.0 body, so the REST API, its
deployment and stage, and the invoke permission are planned, not applied.

Then the deployed function is read back from moto, the ``deployment.zip`` Terraform uploaded
(same SHA-256 as moto reports) is unpacked into a fresh directory, and its handler is
invoked in a separate Python process that sees only the zip, boto3 (as the Lambda runtime
provides it) and the function's environment, with API Gateway REST proxy events.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from chalicelib.schema import table_definition
from tests.deploy.conftest import INFRA, REGION, Terraform

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
    "aws_s3_bucket_cors_configuration.images",
    "aws_dynamodb_table.metadata",
    "aws_cloudwatch_log_group.api",
    "module.api.aws_iam_role.api_handler_role",
    "module.api.aws_iam_role_policy.api_handler_role",
    "module.api.aws_lambda_function.api_handler",
    "module.api.aws_lambda_permission.rest_api_invoke",
    "module.api.aws_api_gateway_rest_api.rest_api",
    "module.api.aws_api_gateway_deployment.rest_api",
    "module.api.aws_api_gateway_stage.rest_api",
}
FUNCTION_NAME = "image-service-localstack"


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
    assert all(c["change"]["actions"] == ["create"] for c in plan["resource_changes"])
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


def test_apply_creates_everything_but_the_rest_api(applied: Terraform) -> None:
    state = json.loads(applied.run("show", "-json").stdout)
    resources = state["values"]["root_module"].get("resources", [])
    for child in state["values"]["root_module"].get("child_modules", []):
        resources += child["resources"]
    created = {r["address"] for r in resources if r["mode"] == "managed"}
    applicable = {a for a in EXPECTED_PLAN if "api_gateway" not in a and "permission" not in a}
    assert created >= applicable, applicable - created


def test_bucket_is_private_encrypted_and_allows_browser_get_put(applied: Terraform) -> None:
    s3 = client("s3", applied.moto_endpoint)
    bucket = applied.outputs["bucket_name"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    cors = s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]
    assert {"GET", "PUT"} <= set(cors["AllowedMethods"])


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
    """The deployed function's configuration, read back from moto."""
    config: dict[str, Any] = client("lambda", applied.moto_endpoint).get_function_configuration(
        FunctionName=FUNCTION_NAME
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
    assert env["MAX_IMAGE_BYTES"] == "10485760"
    assert env["MAX_IMAGE_PIXELS"] == "50000000"
    assert env["URL_EXPIRES_SECONDS"] == "900"
    assert env["AUTH_ENABLED"] == "false"
    assert not any("${" in value for value in env.values()), env
    assert function["Handler"] == "app.app"
    assert function["Runtime"] == "python3.11"


def test_function_policy_is_least_privilege(applied: Terraform, function: dict[str, Any]) -> None:
    iam = client("iam", applied.moto_endpoint)
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
    bucket_arn = f"arn:aws:s3:::{applied.outputs['bucket_name']}"
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{applied.outputs['table_name']}"
    log_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{FUNCTION_NAME}:*"
    table_actions = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
        "dynamodb:DescribeTable",
    }
    assert granted == {
        log_arn: {"logs:CreateLogStream", "logs:PutLogEvents"},
        bucket_arn: {"s3:ListBucket"},
        f"{bucket_arn}/*": {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"},
        table_arn: table_actions,
        f"{table_arn}/index/*": table_actions,
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

    def invoke(self, event: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send one event; return the handler's API Gateway proxy response.

        Raises:
            AssertionError: the handler raised, the process died, or ``timeout`` passed.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"no answer within {timeout}s to {event['httpMethod']} {event['path']}"
        line = self.process.stdout.readline()
        assert line, f"handler process exited {self.process.wait()}; its stderr is above"
        reply: dict[str, Any] = json.loads(line)
        assert "error" not in reply, reply.get("error")
        response: dict[str, Any] = reply["response"]
        return response


@pytest.fixture(scope="module")
def handler(
    applied: Terraform, function: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedHandler]:
    """The handler from the uploaded deployment.zip, with the function's environment.

    Like LocalStack, the process gets an AWS_ENDPOINT_URL of its own (``localhost``), and
    the function's S3_PUBLIC_ENDPOINT_URL (``127.0.0.1``) is what presigned URLs must use.
    """
    archive = applied.workdir / "chalice" / "deployment.zip"
    digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    assert function["CodeSha256"] == digest, "moto holds another zip than chalice package wrote"
    root = tmp_path_factory.mktemp("lambda")
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


def _json(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def test_deployed_handler_serves_the_api(applied: Terraform, handler: DeployedHandler) -> None:
    bucket = applied.outputs["bucket_name"]
    table = applied.outputs["table_name"]
    s3 = client("s3", applied.moto_endpoint)
    dynamodb = client("dynamodb", applied.moto_endpoint)
    public = urlsplit(applied.moto_endpoint)

    health = handler.invoke(load_event("apigw_rest_get_health.json"))
    assert (health["statusCode"], _json(health)) == (200, {"status": "ok"})

    upload = handler.invoke(load_event("apigw_rest_post_images_multipart.json"))
    assert upload["statusCode"] == 201, upload
    record = _json(upload)
    image_id = record["image_id"]
    assert upload["headers"]["Location"] == f"/images/{image_id}"
    assert (record["user_id"], record["title"]) == ("alice", "Red square")
    assert record["tags"] == ["red", "shapes"]
    assert (record["content_type"], record["width"], record["height"]) == ("image/png", 4, 3)
    stored = s3.get_object(Bucket=bucket, Key=record["s3_key"])["Body"].read()
    assert stored == uploaded_png()

    listing = handler.invoke(load_event("apigw_rest_get_images.json"))
    assert listing["statusCode"] == 200, listing
    page = _json(listing)
    assert [item["image_id"] for item in page["items"]] == [image_id]
    assert urlsplit(page["items"][0]["url"]).netloc == public.netloc

    view = handler.invoke(load_event("apigw_rest_get_image.json", image_id))
    assert view["statusCode"] == 200, view
    viewed = _json(view)
    assert viewed["image_id"] == image_id and viewed["expires_in"] == 120
    # Signed for the public endpoint, not the one the function talks to: fetchable as is.
    assert urlsplit(viewed["download_url"]).netloc == public.netloc
    fetched = requests.get(viewed["download_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == uploaded_png()

    download = handler.invoke(load_event("apigw_rest_get_image_download.json", image_id))
    assert download["statusCode"] == 302, download
    saved = requests.get(download["headers"]["Location"], timeout=10)
    assert saved.content == uploaded_png()
    assert "attachment" in saved.headers["Content-Disposition"]

    other = load_event("apigw_rest_delete_image.json", image_id, X_User_Id="mallory")
    assert handler.invoke(other)["statusCode"] == 403

    deleted = handler.invoke(load_event("apigw_rest_delete_image.json", image_id))
    assert deleted["statusCode"] == 200, deleted
    assert _json(deleted) == {"message": "Image deleted", "image_id": image_id}
    gone = handler.invoke(load_event("apigw_rest_get_image.json", image_id))
    assert gone["statusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Only the image's items go; the feed's month marker (FEEDMONTHS) may stay.
    items = dynamodb.scan(TableName=table)["Items"]
    assert not [item for item in items if image_id in json.dumps(item)], items


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
