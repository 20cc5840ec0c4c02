"""`make reconcile`: run the sweep (``chalicelib.sweep``) with a Chalice stage's environment.

The bucket and table names come from the stage in ``.chalice/config.json`` (default
``dev``, what ``make run`` serves) unless ``BUCKET_NAME`` is already set; the endpoint
comes from ``AWS_ENDPOINT_URL`` as for every boto3 client (``make run`` prints it).

Usage: ``python -m scripts.reconcile [--stage dev] [--fix] [--grace-minutes 60]``
"""

from __future__ import annotations

import argparse
import os
import sys

from chalicelib import sweep
from scripts.run_local import aws_environment, stage_environment


def main() -> int:
    """Load the stage's environment, then hand the other arguments to the command."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--stage", default="dev")
    args, rest = parser.parse_known_args()
    if "BUCKET_NAME" not in os.environ:
        os.environ.update(stage_environment(args.stage))
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        os.environ.update(aws_environment(endpoint))
    return sweep.main(rest)


if __name__ == "__main__":
    sys.exit(main())
