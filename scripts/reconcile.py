"""`make reconcile`: run the sweep (``chalicelib.sweep``) with a Chalice stage's environment.

The bucket and table names come from the stage in ``.chalice/config.json`` unless
``BUCKET_NAME`` is already set. The endpoint, in this order:

1. ``AWS_ENDPOINT_URL``, as for every boto3 client (LocalStack, a moto server);
2. the emulator of a running ``make run`` of this checkout, from the state file it
   writes (:func:`scripts.run_local.state_path`), with its stage by default;
3. AWS itself, when a region and credentials are configured.

With none of them it says what it needs and exits 2, instead of failing in boto3; an
emulator endpoint where nothing listens is one line naming it (exit 2). A slow emulator
is retried slice by slice by the sweep (:class:`chalicelib.sweep.SweepStopped`).

Usage: ``python -m scripts.reconcile [--stage dev] [--fix] [--grace-minutes 60]``
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import MutableMapping
from urllib.parse import urlsplit

import boto3

from chalicelib import sweep
from scripts.run_local import aws_environment, running_state, stage_environment, state_path

#: What reconcile says when it finds nothing to talk to.
NOTHING_TO_RECONCILE = (
    "no AWS endpoint to reconcile: start `make run` first (reconcile finds its emulator "
    "through {state}), or set AWS_ENDPOINT_URL to an emulator's URL, or configure AWS "
    "credentials and a region (AWS_DEFAULT_REGION) for a real deployment"
)


class NoEndpointError(Exception):
    """Neither an endpoint nor AWS credentials and a region are configured, or nothing
    listens at the endpoint."""


def check_listening(endpoint: str, source: str, timeout: float = 3.0) -> None:
    """Raise :class:`NoEndpointError` naming ``endpoint`` (from ``source``) when no TCP
    connection to its host and port opens within ``timeout`` seconds."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return
    except (OSError, ValueError) as error:
        raise NoEndpointError(
            f"nothing answers at {endpoint} (from {source}: {error}); start `make run`, "
            "or point AWS_ENDPOINT_URL at a running emulator"
        ) from error


def locate_aws(environ: MutableMapping[str, str], stage: str | None) -> str:
    """Point ``environ`` at the AWS that reconcile should sweep; return a line saying which.

    Fills in the stage's ``BUCKET_NAME``/``TABLE_NAME`` (``stage``, else the running
    ``make run``'s, else ``dev``) unless ``BUCKET_NAME`` is set, and for an emulator its
    endpoint with a region and dummy credentials (:func:`scripts.run_local.aws_environment`).

    Raises:
        NoEndpointError: no ``AWS_ENDPOINT_URL``, no running ``make run``, and no AWS
            region or credentials (boto3 would fail with ``NoRegionError``); or nothing
            listens at the endpoint.
    """
    endpoint = environ.get("AWS_ENDPOINT_URL", "").strip()
    source = "AWS_ENDPOINT_URL"
    state = None if endpoint else running_state(state_path(environ))
    if state is not None:
        endpoint = str(state["endpoint_url"])
        source = f"the running `make run` (pid {state['pid']}, {state['api_url']})"
        stage = stage or str(state.get("stage") or "dev")
    if "BUCKET_NAME" not in environ:
        environ.update(stage_environment(stage or "dev"))
    if endpoint:
        check_listening(endpoint, source)
        environ.update(aws_environment(endpoint, environ))
        return f"reconcile: {endpoint}, from {source}"
    session = boto3.session.Session()
    if session.region_name is None or session.get_credentials() is None:
        raise NoEndpointError(NOTHING_TO_RECONCILE.format(state=state_path(environ)))
    return f"reconcile: AWS, region {session.region_name}"


def main() -> int:
    """Find the endpoint, then hand the other arguments to the command."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--stage", default=None)
    args, rest = parser.parse_known_args()
    try:
        print(locate_aws(os.environ, args.stage), file=sys.stderr)
    except NoEndpointError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    return sweep.main(rest)


if __name__ == "__main__":
    sys.exit(main())
