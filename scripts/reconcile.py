"""`make reconcile`: run the sweep (``chalicelib.sweep``) with a Chalice stage's environment.

The bucket and table names come from the stage in ``.chalice/config.json`` unless
``BUCKET_NAME`` is already set. The endpoint, in this order:

1. ``AWS_ENDPOINT_URL``, as for every boto3 client (LocalStack, a moto server);
2. the emulator of a running ``make run`` of this checkout, from the state file it
   writes (:func:`scripts.run_local.state_path`), with its stage by default;
3. AWS itself, when a region and credentials are configured.

With none of them it says what it needs and exits 2, instead of failing in boto3.

Usage: ``python -m scripts.reconcile [--stage dev] [--fix] [--grace-minutes 60]``
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping

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
    """Neither an endpoint nor AWS credentials and a region are configured."""


def locate_aws(environ: MutableMapping[str, str], stage: str | None) -> str:
    """Point ``environ`` at the AWS that reconcile should sweep; return a line saying which.

    Fills in the stage's ``BUCKET_NAME``/``TABLE_NAME`` (``stage``, else the running
    ``make run``'s, else ``dev``) unless ``BUCKET_NAME`` is set, and for an emulator its
    endpoint with a region and dummy credentials (:func:`scripts.run_local.aws_environment`).

    Raises:
        NoEndpointError: no ``AWS_ENDPOINT_URL``, no running ``make run``, and no AWS
            region or credentials (boto3 would fail with ``NoRegionError``).
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
