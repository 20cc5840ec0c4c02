"""`make run`: serve the API with ``chalice local`` against an AWS emulator, no Docker.

Steps:

1. Endpoint: ``AWS_ENDPOINT_URL`` when set (e.g. LocalStack at http://localhost:4566),
   otherwise a fresh moto server on loopback (:func:`scripts.emulator.start_moto_server`).
2. Resources: the bucket and table named by the stage's ``environment_variables`` in
   ``.chalice/config.json``, the table built from :mod:`chalicelib.schema`; both are
   created only when missing (:func:`ensure_resources`). The bucket's CORS lets the
   gallery's page (this port) and ``CORS_ALLOW_ORIGINS`` post uploads to it
   (:func:`ensure_bucket_cors`).
3. Upload events: the bucket notifies an SQS queue of objects created under
   ``uploads/`` and a child process (``python -m scripts.deliver_uploads``, with the
   stage's environment) hands each event to ``app.on_upload_created``, the handler the
   deployed S3 notification invokes: moto invokes no Lambda, so without this a client
   that uploads and polls would wait forever (see :mod:`scripts.deliver_uploads`).
4. ``chalice local --stage dev --host 127.0.0.1 --port PORT --no-autoreload`` as a child
   whose environment carries the endpoint, a region, and dummy credentials when the user
   has none. The rest of the caller's environment passes through; the ``dev`` stage sets
   no ``AUTH_MODE``, so ``AUTH_MODE=jwt make run`` serves with the JWT authorizer on.

Reloading is opt-in (``--reload``, ``make run RELOAD=1``) and watches the code only
(:data:`CODE_PATHS`): chalice's own autoreload restarts on a file written anywhere in
the project (a ``make deploy`` restarted a running server nine times, dropping requests).

While it serves, it says where in a small state file (:func:`state_path`: in the
system's temporary directory, named after this checkout; ``RUN_LOCAL_STATE`` overrides
it): ``{"pid", "api_url", "endpoint_url", "stage"}``. ``make reconcile`` reads it to find
the running emulator (:func:`running_state`); the file is removed on exit.

Ctrl-C or SIGTERM stops ``chalice local`` (its whole process group), the event delivery
and then moto. If ``chalice local``, the delivery
or moto exits on its own, so does this script, with a non-zero status.

Usage: ``python -m scripts.run_local [--port 8000] [--stage dev] [--reload]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.schema import create_table
from chalicelib.storage import UPLOAD_PREFIX, ImageStorage
from scripts.deliver_uploads import DEFAULT_HANDLER, subscribe
from scripts.emulator import (
    DUMMY_CREDENTIALS,
    PROJECT_DIR,
    MotoServer,
    start_moto_server,
    wait_for_port,
)

DEFAULT_REGION = DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]
HOST = "127.0.0.1"
#: What ``--reload`` watches, relative to the project: the app's code and its config.
CODE_PATHS = ("app.py", "chalicelib", ".chalice/config.json")


def state_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``make run`` writes its state: ``RUN_LOCAL_STATE``, else
    ``<temporary directory>/image-service-run-local-<digest of the project path>.json``.

    Outside the project on purpose: run state is not part of the checkout (chalice's own
    autoreload, had it been on, would restart the server at every write under it). One file
    per checkout, so ``make run`` in two checkouts do not mix.
    """
    env = os.environ if environ is None else environ
    if env.get("RUN_LOCAL_STATE"):
        return Path(env["RUN_LOCAL_STATE"])
    digest = hashlib.sha256(str(PROJECT_DIR).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"image-service-run-local-{digest}.json"


def write_state(path: Path, *, api_url: str, endpoint_url: str, stage: str) -> None:
    """Record that this process serves ``api_url`` against ``endpoint_url`` (atomically:
    a reader never sees half a file)."""
    state = {"pid": os.getpid(), "api_url": api_url, "endpoint_url": endpoint_url, "stage": stage}
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(state) + "\n")
    partial.replace(path)


def remove_state(path: Path) -> None:
    """Remove the state file if it is this process's (another ``make run`` on another
    port may have written it since)."""
    state = _read_state(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def running_state(path: Path) -> dict[str, object] | None:
    """The state of the ``make run`` that wrote ``path``, if that process still runs.

    Returns:
        ``{"pid", "api_url", "endpoint_url", "stage"}``, or None when there is no file,
        it is unreadable, or its process is gone (killed without cleaning up).
    """
    state = _read_state(path)
    if state is None or not isinstance(state.get("endpoint_url"), str):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _process_exists(pid):
        return None
    return state


def _read_state(path: Path) -> dict[str, object] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def stage_environment(stage: str = "dev", project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The environment variables ``chalice local --stage STAGE`` gives the app.

    Top-level ``environment_variables`` of ``.chalice/config.json``, overridden by the
    stage's own, as Chalice merges them.

    Raises:
        KeyError: the stage is not in the config file.
    """
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stage_config = config["stages"][stage]
    return {
        **config.get("environment_variables", {}),
        **stage_config.get("environment_variables", {}),
    }


def aws_environment(endpoint_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) pointed at ``endpoint_url``.

    Adds ``AWS_ENDPOINT_URL``, a region when none is set, and the dummy credentials of
    :data:`scripts.emulator.DUMMY_CREDENTIALS` unless the user has credentials of their
    own in the environment (``AWS_ACCESS_KEY_ID`` or ``AWS_PROFILE``).
    """
    env = dict(os.environ if environ is None else environ)
    env["AWS_ENDPOINT_URL"] = endpoint_url
    if not (env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE")):
        env["AWS_ACCESS_KEY_ID"] = DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]
        env["AWS_SECRET_ACCESS_KEY"] = DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        env["AWS_DEFAULT_REGION"] = DEFAULT_REGION
    return env


def ensure_resources(
    endpoint_url: str,
    bucket: str,
    table: str,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Create the S3 bucket and the DynamoDB table at ``endpoint_url`` if missing.

    The table comes from :func:`chalicelib.schema.create_table` (the one schema
    definition), the bucket from :meth:`chalicelib.storage.ImageStorage.create_bucket`.
    Safe to call again: existing resources are left as they are. Credentials and region
    come from :func:`aws_environment` applied to ``environ``.
    """
    session = _session(aws_environment(endpoint_url, environ))
    s3 = session.client(
        "s3", endpoint_url=endpoint_url, config=Config(s3={"addressing_style": "path"})
    )
    ImageStorage(s3, bucket).create_bucket()
    create_table(session.client("dynamodb", endpoint_url=endpoint_url), table)


def page_origins(port: int, environ: Mapping[str, str] | None = None) -> list[str]:
    """Origins that may talk to the bucket from a browser under ``make run``.

    The gallery's own origin (``http://127.0.0.1:PORT`` and ``http://localhost:PORT``:
    the page posts uploads to the emulator, which is another origin) and every
    ``CORS_ALLOW_ORIGINS`` entry (``*``: any origin), read from ``environ`` (default
    ``os.environ``) then the dev stage, as the app reads it.
    """
    env = os.environ if environ is None else environ
    configured = env.get("CORS_ALLOW_ORIGINS") or stage_environment().get("CORS_ALLOW_ORIGINS", "")
    extra = [origin.strip() for origin in configured.split(",") if origin.strip()]
    if "*" in extra:
        return ["*"]
    return list(dict.fromkeys([f"http://{HOST}:{port}", f"http://localhost:{port}", *extra]))


def ensure_bucket_cors(
    endpoint_url: str, bucket: str, origins: Sequence[str], environ: Mapping[str, str] | None = None
) -> None:
    """Let browsers from ``origins`` POST uploads to ``bucket`` and GET its objects
    (what ``infra/``'s bucket CORS does for a deploy). Replaces the bucket's CORS rules."""
    env = aws_environment(endpoint_url, environ)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(origins),
                    "AllowedMethods": ["GET", "HEAD", "POST"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag", "Location"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )


def _session(env: Mapping[str, str]) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        profile_name=None if env.get("AWS_ACCESS_KEY_ID") else env.get("AWS_PROFILE"),
        region_name=env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"],
    )


def subscribe_upload_events(
    endpoint_url: str, bucket: str, environ: Mapping[str, str] | None = None
) -> str:
    """Make ``bucket`` at ``endpoint_url`` notify a queue of objects created under
    ``uploads/`` (:func:`scripts.deliver_uploads.subscribe`); return the queue URL.

    Raises:
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: the emulator
            refused or could not be reached.
    """
    session = _session(aws_environment(endpoint_url, environ))
    s3 = session.client(
        "s3", endpoint_url=endpoint_url, config=Config(s3={"addressing_style": "path"})
    )
    return subscribe(s3, session.client("sqs", endpoint_url=endpoint_url), bucket, UPLOAD_PREFIX)


def delivery_environment(
    endpoint_url: str, stage_env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of the upload event delivery: what ``chalice local`` gives the app
    (the caller's environment pointed at the emulator, overridden by the stage's
    variables), so the handler builds the same service the API does."""
    return {**aws_environment(endpoint_url, environ), **stage_env}


def delivery_command(queue_url: str, handler: str = DEFAULT_HANDLER) -> list[str]:
    """The command line of the upload event delivery (``python -m scripts.deliver_uploads``)."""
    return [
        sys.executable,
        "-m",
        "scripts.deliver_uploads",
        "--queue-url",
        queue_url,
        "--handler",
        handler,
    ]


def chalice_command(port: int, stage: str = "dev", host: str = HOST) -> list[str]:
    """The ``chalice local --no-autoreload`` command line, using the ``chalice`` next to
    this Python (reloading, when asked for, is :func:`code_fingerprint`'s job).

    Raises:
        FileNotFoundError: no ``chalice`` executable is installed.
    """
    beside_python = Path(sys.executable).parent / "chalice"
    executable = str(beside_python) if beside_python.exists() else shutil.which("chalice")
    if executable is None:
        raise FileNotFoundError("chalice is not installed: run `make install`")
    return [
        executable,
        *("local", "--stage", stage, "--host", host, "--port", str(port), "--no-autoreload"),
    ]


def code_fingerprint(project_dir: Path = PROJECT_DIR) -> dict[str, int]:
    """``{relative path: mtime in ns}`` of every file under :data:`CODE_PATHS` (``__pycache__``
    left out): what ``--reload`` compares every half second. Linear in the code's files."""
    found: dict[str, int] = {}
    for name in CODE_PATHS:
        root = project_dir / name
        files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                found[str(path.relative_to(project_dir))] = path.stat().st_mtime_ns
    return found


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could bind ``host:port`` now (``chalice local`` cannot share it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop ``process`` and every process in its group: SIGTERM, then SIGKILL to leftovers.

    ``process`` must lead its own group (``start_new_session=True``).
    """
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever did not stop, or was orphaned
    process.wait()


def start_chalice(port: int, stage: str, endpoint_url: str) -> subprocess.Popen[bytes] | None:
    """Start ``chalice local`` in its own process group and wait until it listens;
    None (after saying why on stderr) when it does not within 60 s."""
    chalice = subprocess.Popen(
        chalice_command(port, stage),
        cwd=PROJECT_DIR,
        env=aws_environment(endpoint_url),
        start_new_session=True,  # Ctrl-C reaches us; we stop its whole group
    )
    try:
        wait_for_port(port, chalice, timeout=60)
    except RuntimeError as error:
        print(f"run_local: chalice local did not start: {error}", file=sys.stderr)
        stop_process_group(chalice)
        return None
    return chalice


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options of ``python -m scripts.run_local``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--stage", default="dev", help="Chalice stage (default dev)")
    parser.add_argument(
        "--emulator-port", type=int, default=None, help="moto's port (default: a free one)"
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart chalice local when app.py, chalicelib/ or .chalice/config.json change",
    )
    parser.add_argument(
        "--no-autoreload",
        dest="reload",
        action="store_false",
        help="never restart chalice local (the default)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run emulator + ``chalice local`` until Ctrl-C/SIGTERM; return the exit status."""
    args = parse_args(argv)
    # Explicit for SIGINT too: a shell's background job starts with SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    stage_env = stage_environment(args.stage)
    state_file = state_path()
    moto: MotoServer | None = None
    chalice: subprocess.Popen[bytes] | None = None
    delivery: subprocess.Popen[bytes] | None = None
    try:
        if not port_is_free(args.port):
            print(
                f"run_local: port {args.port} is in use; try `make run PORT=8001`", file=sys.stderr
            )
            return 1
        endpoint_url = os.environ.get("AWS_ENDPOINT_URL", "").strip()
        if endpoint_url:
            emulator = f"{endpoint_url} (from AWS_ENDPOINT_URL)"
        else:
            moto = start_moto_server(args.emulator_port)
            endpoint_url = moto.endpoint_url
            emulator = f"{endpoint_url} (moto server, pid {moto.process.pid})"
        bucket, table = stage_env["BUCKET_NAME"], stage_env["TABLE_NAME"]
        try:
            ensure_resources(endpoint_url, bucket, table)
            ensure_bucket_cors(endpoint_url, bucket, page_origins(args.port))
            queue_url = subscribe_upload_events(endpoint_url, bucket)
        except (BotoCoreError, ClientError) as error:
            print(
                f"run_local: cannot create {bucket}/{table} or its upload events queue at "
                f"{endpoint_url}: {error}",
                file=sys.stderr,
            )
            return 1
        delivery = subprocess.Popen(
            delivery_command(queue_url),
            cwd=PROJECT_DIR,
            env=delivery_environment(endpoint_url, stage_env),
            start_new_session=True,
        )
        code = code_fingerprint() if args.reload else {}
        chalice = start_chalice(args.port, args.stage, endpoint_url)
        if chalice is None:
            return 1
        write_state(
            state_file,
            api_url=f"http://{HOST}:{args.port}",
            endpoint_url=endpoint_url,
            stage=args.stage,
        )
        print(
            f"Image service API: http://{HOST}:{args.port}  |  AWS emulator: {emulator}, "
            f"bucket {bucket}, table {table}  |  AUTH_MODE={os.environ.get('AUTH_MODE') or 'none'}"
            f"  |  upload events: {UPLOAD_PREFIX} -> app.{DEFAULT_HANDLER} (pid {delivery.pid})"
            "  |  Ctrl-C stops all",
            flush=True,
        )
        print(
            "AWS CLI against the emulator: any dummy credentials will do, e.g. "
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            f"AWS_DEFAULT_REGION={DEFAULT_REGION} aws --endpoint-url {endpoint_url} s3 ls",
            flush=True,
        )
        while True:
            try:
                returncode = chalice.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if args.reload and (changed := code_fingerprint()) != code:
                    code = changed
                    stop_process_group(chalice)
                    print("run_local: code changed, restarting chalice local", flush=True)
                    chalice = start_chalice(args.port, args.stage, endpoint_url)
                    if chalice is None:
                        return 1
                if moto is not None and moto.process.poll() is not None:
                    print(
                        f"run_local: moto server exited ({moto.process.returncode})",
                        file=sys.stderr,
                    )
                    return 1
                if delivery.poll() is not None:
                    print(
                        f"run_local: upload event delivery exited ({delivery.returncode})",
                        file=sys.stderr,
                    )
                    return 1
                continue
            print(f"run_local: chalice local exited ({returncode})", file=sys.stderr)
            return returncode if returncode > 0 else 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        remove_state(state_file)
        if chalice is not None:
            stop_process_group(chalice)
        if delivery is not None:
            stop_process_group(delivery)
        if moto is not None:
            moto.stop()


if __name__ == "__main__":
    sys.exit(main())
