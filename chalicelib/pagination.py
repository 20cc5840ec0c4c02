"""Opaque, tamper-evident ``next_token`` values for ``GET /images``.

A token is a JWT (HS256, signed with ``TOKEN_SECRET`` through PyJWT) carrying the sort
key of the last item of the page (``{created_at}#{image_id}``) and a digest of the
filters it was issued for. Clients treat it as an opaque string; a modified token, or a
token replayed with other filters, is refused with a 400 naming ``next_token``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from chalicelib.errors import InvalidInputError

_ALGORITHM = "HS256"
#: ``{created_at}#{image_id}`` as written by the service.
_CURSOR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z#[0-9a-f-]{36}")


class PageTokenCodec:
    """Encodes and verifies pagination tokens.

    Args:
        secret: HMAC key (``TOKEN_SECRET``); tokens from another secret are refused.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def encode(self, cursor: str, filters: dict[str, Any]) -> str:
        """A token resuming at ``cursor`` (the next page's first sort key) for ``filters``."""
        import jwt  # deferred: most cold starts never page

        return jwt.encode({"c": cursor, "f": _digest(filters)}, self._secret, algorithm=_ALGORITHM)

    def decode(self, token: str, filters: dict[str, Any]) -> str:
        """The cursor inside ``token``.

        Raises:
            InvalidInputError: (field ``next_token``) the signature does not verify, the
                token is malformed, or it was issued for other filters.
        """
        import jwt  # deferred: most cold starts never page

        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM])
        except jwt.PyJWTError:
            raise InvalidInputError(
                "next_token", "is not a token this service issued (modified or corrupt)"
            ) from None
        cursor = claims.get("c")
        if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
            raise InvalidInputError("next_token", "is malformed")
        if claims.get("f") != _digest(filters):
            raise InvalidInputError("next_token", "was issued for a query with other filters")
        return cursor


def _digest(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
