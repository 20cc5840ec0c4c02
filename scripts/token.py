"""`make token USER=alice [TTL=3600]`: print a bearer token for ``AUTH_MODE=jwt``.

The token is what ``chalicelib.auth.verify_token`` accepts: HS256, ``sub`` = the user,
``iss``/``aud`` as configured, ``exp`` = now + TTL seconds (at most one day). It is signed
with ``JWT_SECRET`` for ``JWT_ISSUER`` and ``JWT_AUDIENCE``, each taken from the
environment when set, otherwise from the stage's ``environment_variables`` in
``.chalice/config.json`` (default stage ``dev``: what ``AUTH_MODE=jwt make run`` checks
tokens against). Values a stage leaves to Terraform (``${var.jwt_secret}``) count as
unset: for a deployed stage, pass its secret in ``JWT_SECRET``.

Usage: ``python -m scripts.token USER [--ttl SECONDS] [--stage dev]``; prints only the
token, so ``curl -H "Authorization: Bearer $(make -s token USER=alice)" ...`` works.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from chalicelib.auth import MAX_TTL_SECONDS, issue_token
from chalicelib.config import ConfigurationError, JwtSettings
from scripts.run_local import stage_environment

JWT_VARIABLES = ("JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE")


def jwt_settings(stage: str = "dev", environ: Mapping[str, str] | None = None) -> JwtSettings:
    """The token rules of ``stage``, each overridden by ``environ`` (default ``os.environ``).

    Raises:
        KeyError: the stage is not in ``.chalice/config.json``.
        ConfigurationError: no usable ``JWT_SECRET`` (unset, a Terraform reference, or
            shorter than 32 bytes).
    """
    env = os.environ if environ is None else environ
    configured = {
        name: value
        for name, value in stage_environment(stage).items()
        if name in JWT_VARIABLES and not value.startswith("${")
    }
    overrides = {name: env[name] for name in JWT_VARIABLES if env.get(name)}
    return JwtSettings.from_env({**configured, **overrides})


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print a token for the user named in ``argv``; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("user", help="the token's sub: the user_id it authenticates")
    parser.add_argument(
        "--ttl", type=int, default=3600, help=f"lifetime in seconds (1-{MAX_TTL_SECONDS})"
    )
    parser.add_argument("--stage", default="dev", help="Chalice stage to read (default dev)")
    args = parser.parse_args(argv)
    try:
        settings = jwt_settings(args.stage, environ)
        token = issue_token(args.user, settings, args.ttl)
    except KeyError:
        print(f"token: no stage {args.stage!r} in .chalice/config.json", file=sys.stderr)
        return 2
    except (ConfigurationError, ValueError) as error:
        print(f"token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
