"""Opaque, tamper-evident ``next_token`` values for ``GET /images``.

A token is a JWT (HS256, signed with ``TOKEN_SECRET`` through PyJWT) carrying the sort
key where the next page starts (``{created_at}#{image_id}``: every shard of a sharded
partition resumes there, see ``chalicelib/listing.py``), the density of matches the page
saw (sizes the next page's first Queries) and a digest of the filters it was issued
for. Clients treat it as an opaque string; a modified token, or a
token replayed with other filters, is refused with a 400 naming ``next_token``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidInputError

_ALGORITHM = "HS256"
#: ``{created_at}#{image_id}`` as written by the service.
_CURSOR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z#[0-9a-f-]{36}")


@dataclass(frozen=True)
class Position:
    """Where a listing resumes: ``cursor``, the next page's first sort key (inclusive),
    and ``density``, matches per millisecond per shard seen so far (None: unknown)."""

    cursor: str
    density: float | None = None


class PageTokenCodec:
    """Encodes and verifies pagination tokens.

    Args:
        secret: HMAC key (``TOKEN_SECRET``); tokens from another secret are refused.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def encode(self, position: Position, filters: dict[str, Any]) -> str:
        """A token resuming at ``position`` for ``filters``."""
        claims: dict[str, Any] = {"c": position.cursor, "f": _digest(filters)}
        if position.density is not None:
            claims["d"] = position.density
        import jwt  # deferred: most cold starts never page

        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def decode(self, token: str, filters: dict[str, Any]) -> Position:
        """The position inside ``token``.

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
        density = claims.get("d")
        if density is not None and not (
            isinstance(density, float | int) and math.isfinite(density) and density >= 0
        ):
            raise InvalidInputError("next_token", "is malformed")
        return Position(cursor, None if density is None else float(density))


def _digest(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
