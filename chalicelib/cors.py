"""CORS for the API: which browser origins may call it, decided per request.

Why not Chalice's ``CORSConfig``: it holds one ``allow_origin``, fixed when ``app.py``
is imported, and for a deploy ``chalice package`` turns it into a static API Gateway
mock integration for ``OPTIONS``, whose headers cannot depend on the request (nor on
``CORS_ALLOW_ORIGINS``, a Terraform variable unknown at packaging time). So ``app.py``
declares an explicit ``OPTIONS`` route on every path (without an authorizer: browsers
send no credentials on a preflight) and an HTTP middleware that adds the response
headers; both ask a :class:`CorsPolicy` built from ``Settings.cors_allow_origins``.
The same code answers under ``chalice local``, the Chalice test client and Lambda.

Rules (the Fetch standard's CORS protocol):

- empty ``CORS_ALLOW_ORIGINS``: no CORS header at all (same origin only);
- ``*``: ``Access-Control-Allow-Origin: *`` for every origin;
- otherwise the request's ``Origin`` is echoed when it is in the list (exact match of
  ``scheme://host[:port]``), with ``Vary: Origin`` on every response so a cache never
  serves one origin's answer to another; an origin not in the list gets no
  ``Access-Control-Allow-Origin``, and the browser refuses the response.

Preflights also name the path's methods, the request headers the API reads
(:data:`ALLOWED_HEADERS`) and a max age; responses expose ``ETag`` and ``Location``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Request headers a browser may send cross-origin (beyond the CORS-safelisted ones).
ALLOWED_HEADERS: tuple[str, ...] = ("Authorization", "Content-Type", "If-Match", "X-User-Id")
#: Response headers a cross-origin script may read (beyond the safelisted ones).
EXPOSED_HEADERS: tuple[str, ...] = ("ETag", "Location")
#: How long a browser may cache a preflight answer, in seconds.
PREFLIGHT_MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class CorsPolicy:
    """The origins allowed to call the API from a browser.

    Attributes:
        origins: allowed origins (``https://app.example.com``), or ``("*",)`` for any;
            empty means no cross-origin access (no CORS headers are sent).
    """

    origins: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any cross-origin access is allowed."""
        return bool(self.origins)

    @property
    def any_origin(self) -> bool:
        """Whether every origin is allowed (``*``)."""
        return "*" in self.origins

    def allow_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``
        (``"*"``, the origin itself), or None when that origin is not allowed."""
        if self.any_origin:
            return "*"
        if origin and origin.rstrip("/") in self.origins:
            return origin.rstrip("/")
        return None

    def _vary(self) -> dict[str, str]:
        # The answer depends on Origin whenever the list is not simply "*".
        return {} if not self.enabled or self.any_origin else {"Vary": "Origin"}

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers to add to an actual (non-preflight) response to ``origin``.

        ``Access-Control-Allow-Origin`` and ``Access-Control-Expose-Headers`` when the
        origin is allowed; ``Vary: Origin`` whenever the answer depends on it; nothing
        when CORS is off.
        """
        headers = self._vary()
        allowed = self.allow_origin(origin)
        if allowed is not None:
            headers["Access-Control-Allow-Origin"] = allowed
            headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
        return headers

    def preflight_headers(
        self,
        origin: str | None,
        request_method: str | None,
        methods: Iterable[str],
    ) -> dict[str, str]:
        """Headers of the answer to a preflight (``OPTIONS``) from ``origin``.

        Args:
            origin: the request's ``Origin`` header.
            request_method: its ``Access-Control-Request-Method`` header.
            methods: the methods the path answers (``OPTIONS`` is added).

        Returns:
            The allow-origin, allow-methods, allow-headers and max-age headers when the
            origin is allowed and asks for one of ``methods``; only ``Vary`` (or
            nothing) otherwise, which the browser reads as a refusal.
        """
        allowed_methods = sorted({method.upper() for method in methods} | {"OPTIONS"})
        headers = self._vary()
        allowed = self.allow_origin(origin)
        if allowed is None or (request_method or "").upper() not in allowed_methods:
            return headers
        headers.update(
            {
                "Access-Control-Allow-Origin": allowed,
                "Access-Control-Allow-Methods": ", ".join(allowed_methods),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
            }
        )
        return headers


#: Response headers as Chalice's ``Response`` takes them (a list: a repeated header).
ResponseHeaders = dict[str, str | list[str]]


def merge_vary(headers: Mapping[str, str | list[str]], extra: Mapping[str, str]) -> ResponseHeaders:
    """``headers`` with ``extra`` added (same name: replaced), except that a ``Vary`` in
    both is joined (``Vary: Accept, Origin``), not replaced."""
    merged: ResponseHeaders = dict(headers)
    for name, value in extra.items():
        existing = next((key for key in merged if key.lower() == name.lower()), None)
        if existing is not None and name.lower() == "vary":
            current = merged[existing]
            joined = current if isinstance(current, str) else ", ".join(current)
            values = [part.strip() for part in joined.split(",") if part.strip()]
            if value not in values:
                merged[existing] = ", ".join([*values, value])
        elif existing is not None:
            merged[existing] = value
        else:
            merged[name] = value
    return merged
