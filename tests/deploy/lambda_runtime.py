"""A stand-in for the Lambda Python runtime: invokes a handler from an unpacked deployment.zip.

Run in its own process, without site-packages, so the handler sees only what Lambda gives it:

    python -I -S lambda_runtime.py CODE_DIR RUNTIME_DIR HANDLER

``CODE_DIR`` is the unpacked zip (``LAMBDA_TASK_ROOT``), ``RUNTIME_DIR`` holds what the
Lambda runtime itself provides (boto3 and its dependencies), ``HANDLER`` is
``module.attribute`` (``app.app`` for Chalice). The environment is the function's.

Protocol: one API Gateway event as JSON per line on stdin; one line per event on stdout,
``{"response": ...}`` or ``{"error": "<traceback>", "errorType": ..., "errorMessage": ...}``
(``errorMessage`` is ``str(exception)``, what Lambda reports and API Gateway reads: a TOKEN
authorizer failing with ``Unauthorized`` means 401). Anything the handler prints goes to
stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
import uuid
from typing import Any


class LambdaContext:
    """The attributes of the Lambda context object that handlers commonly read."""

    def __init__(self) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    code_dir, runtime_dir, handler_name = sys.argv[1:4]
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path[:0] = [code_dir, runtime_dir]
    os.chdir(code_dir)
    module_name, attribute = handler_name.rsplit(".", 1)
    handler: Any = getattr(importlib.import_module(module_name), attribute)
    for line in sys.stdin:
        try:
            reply: dict[str, Any] = {"response": handler(json.loads(line), LambdaContext())}
        except Exception as exc:
            reply = {
                "error": traceback.format_exc(),
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
            }
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
