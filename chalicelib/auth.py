"""Authentication: bearer tokens for ``AUTH_MODE=jwt``, and who the caller is in each mode.

``AUTH_MODE`` (``chalicelib.config.auth_mode``) is one setting with three values:

- ``none`` (the dev default): nobody is authenticated; the caller is whoever the request
  names (``X-User-Id``). The ``/images`` routes carry no authorizer.
- ``jwt``: API Gateway (or ``chalice local``) runs this app's Chalice authorizer
  (``jwt_auth`` in ``app.py``) on every ``/images`` route. It accepts
  ``Authorization: Bearer <JWT>`` signed HS256 with ``JWT_SECRET`` whose ``iss``, ``aud``,
  ``exp`` and ``sub`` check out (:func:`verify_token`), and hands ``sub`` on as the
  request's ``context.authorizer.principalId``. Anything else is a 401.
- ``cognito``: API Gateway's Cognito user pool authorizer verifies the token (deployed
  stages only: Terraform ``auth_mode = "cognito"``); the caller is its ``sub`` claim,
  ``context.authorizer.claims.sub``.

In ``jwt`` and ``cognito`` mode the app itself also refuses (401) a ``/images`` request
that reaches it without a principal, whatever the gateway did (:func:`principal`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.config import AuthMode, JwtSettings, auth_mode
from chalicelib.validation import USER_ID_PATTERN

if TYPE_CHECKING:
    import jwt
    from chalice.local import LocalGatewayException as _GatewayException
else:
    try:  # chalice local and chalice.test answer a LocalGatewayException with its CODE
        from chalice.local import LocalGatewayException as _GatewayException
    except ImportError:  # the Lambda package carries only chalice.app
        _GatewayException = Exception

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
#: Claims a token must carry; ``iat`` and ``nbf`` are checked when present.
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
LEEWAY_SECONDS = 10
#: Longest lifetime :func:`issue_token` signs, in seconds (1 day): dev tokens only.
MAX_TTL_SECONDS = 86_400


def _pyjwt() -> Any:
    """PyJWT, imported on first use: only ``AUTH_MODE=jwt`` verifies tokens, and the
    import (with ``cryptography``'s) would otherwise be paid by every cold start."""
    import jwt  # deferred on purpose, see the docstring

    return jwt


def _reason(error: jwt.InvalidTokenError) -> str:
    """Why PyJWT refused a token, in words (subclasses before their bases)."""
    pyjwt = _pyjwt()
    reasons: list[tuple[type[jwt.InvalidTokenError], str]] = [
        (pyjwt.ExpiredSignatureError, "token has expired"),
        (pyjwt.ImmatureSignatureError, "token is not valid yet (nbf or iat in the future)"),
        (pyjwt.InvalidSignatureError, "token signature does not verify"),
        (pyjwt.InvalidAlgorithmError, f"token algorithm must be {ALGORITHM}"),
        (pyjwt.InvalidIssuerError, "token issuer (iss) is not accepted"),
        (pyjwt.InvalidAudienceError, "token audience (aud) is not accepted"),
        (pyjwt.DecodeError, "not a well-formed JWT"),
    ]
    return next((text for cls, text in reasons if isinstance(error, cls)), "invalid token")


class TokenRejectedError(Exception):
    """A bearer token is missing or does not verify; ``str(exc)`` names why, never the
    token or the key (e.g. ``"Authorization: token has expired"``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Authorization: {reason}")


class GatewayUnauthorizedError(_GatewayException):
    """Raised by the authorizer to make the gateway answer 401.

    API Gateway answers 401 when a TOKEN authorizer fails with the message
    ``Unauthorized`` exactly, which ``str(exc)`` is. ``chalice local`` and Chalice's test
    client turn a ``LocalGatewayException`` into a response of its ``CODE``, ``headers``
    and ``body``: here Chalice's error shape with the reason (API Gateway's own 401 body
    is set by the gateway responses the Terraform post-process step adds).
    """

    CODE = 401

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, "Unauthorized")
        self.reason = reason
        self.headers: dict[str, Any] = {
            "Content-Type": "application/json",
            "WWW-Authenticate": 'Bearer error="invalid_token"',
            "X-Content-Type-Options": "nosniff",
        }
        self.body: bytes | None = json.dumps(
            {"Code": "UnauthorizedError", "Message": reason}
        ).encode()


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme case-insensitive).

    Raises:
        TokenRejectedError: the header is missing, empty or not a Bearer credential.
    """
    if not authorization or not authorization.strip():
        raise TokenRejectedError("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejectedError("expected 'Bearer <token>'")
    return token.strip()


def verify_token(token: str, settings: JwtSettings) -> str:
    """Verify an HS256 JWT and return its subject (the caller's user id).

    Only HS256 is accepted (``alg: none``, RS256 and the rest are refused); ``exp``,
    ``iss``, ``aud`` and ``sub`` are required, ``iss`` and ``aud`` must equal the
    settings', and ``sub`` must be a valid ``user_id`` (1-128 of ``[A-Za-z0-9_.@-]``).
    Time claims get :data:`LEEWAY_SECONDS` of clock skew.

    Raises:
        TokenRejectedError: the token fails any of those checks; the message says which.
    """
    pyjwt = _pyjwt()
    try:
        claims: dict[str, Any] = pyjwt.decode(
            token,
            settings.secret,
            algorithms=[ALGORITHM],
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except pyjwt.MissingRequiredClaimError as exc:
        raise TokenRejectedError(f"token has no {exc.claim!r} claim") from None
    except pyjwt.InvalidTokenError as exc:
        raise TokenRejectedError(_reason(exc)) from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not USER_ID_PATTERN.fullmatch(subject):
        raise TokenRejectedError("token subject (sub) is not a valid user_id")
    return subject


def authorize(authorization: str | None, environ: Mapping[str, str] | None = None) -> str:
    """What the ``jwt_auth`` authorizer does with a request's ``Authorization`` value.

    Returns:
        The verified token's ``sub``.

    Raises:
        GatewayUnauthorizedError: no valid bearer token (the reason is logged and, under
            ``chalice local``, returned in the 401 body).
        ConfigurationError: ``JWT_SECRET`` is unset or too short (the gateway answers 500).
    """
    settings = JwtSettings.from_env(environ)
    try:
        return verify_token(bearer_token(authorization), settings)
    except TokenRejectedError as exc:
        logger.warning("401: %s", exc)
        raise GatewayUnauthorizedError(str(exc)) from None


def issue_token(
    subject: str, settings: JwtSettings, ttl_seconds: int = 3600, now: float | None = None
) -> str:
    """Sign a token :func:`verify_token` accepts, for development and tests.

    Claims: ``sub``, ``iss``, ``aud``, ``iat`` (``now``, default the current time) and
    ``exp`` (``iat + ttl_seconds``).

    Raises:
        ValueError: ``subject`` is not a valid ``user_id``, or ``ttl_seconds`` is not
            within 1..:data:`MAX_TTL_SECONDS`.
    """
    if not USER_ID_PATTERN.fullmatch(subject):
        raise ValueError(f"user: must be 1-128 of [A-Za-z0-9_.@-], got {subject!r}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl: must be 1 to {MAX_TTL_SECONDS} seconds, got {ttl_seconds}")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    token: str = _pyjwt().encode(claims, settings.secret, algorithm=ALGORITHM)
    return token


def declares_authorizer(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``app.py`` puts the ``jwt_auth`` authorizer on the ``/images`` routes.

    Decided once, when ``app.py`` is imported, from ``AUTH_MODE``:

    - ``jwt``: yes; ``chalice local`` and Chalice's test client then run it per request.
    - unset, ``none``, ``cognito``: no; there is nothing to run locally (Cognito tokens
      are verified by API Gateway only, so a local ``cognito`` app answers 401).
    - a Terraform reference such as ``${var.auth_mode}`` (the ``localstack`` stage's
      value, which ``chalice package`` puts in the environment before importing
      ``app.py``): yes, so the package carries the authorizer and
      ``scripts/package_terraform.py`` can derive the none/jwt/cognito Swagger bodies
      that Terraform chooses from with the same variable it gives the function.

    Raises:
        ConfigurationError: any other value.
    """
    env = os.environ if environ is None else environ
    raw = env.get("AUTH_MODE", "").strip()
    if raw.startswith("${"):
        return True
    return auth_mode({"AUTH_MODE": raw}) == "jwt"


def principal(mode: AuthMode, request_context: Mapping[str, Any]) -> str | None:
    """The authenticated caller of a request in ``mode``, or None.

    ``jwt``: ``requestContext.authorizer.principalId`` (set by the Chalice authorizer);
    ``cognito``: ``requestContext.authorizer.claims.sub`` (set by API Gateway's Cognito
    authorizer); ``none``: always None (nobody is authenticated).
    """
    authorizer = request_context.get("authorizer") or {}
    if mode == "jwt":
        value = authorizer.get("principalId")
    elif mode == "cognito":
        value = (authorizer.get("claims") or {}).get("sub")
    else:
        return None
    return value if isinstance(value, str) and value else None
