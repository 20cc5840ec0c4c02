"""Image service API: route declarations only; the work is in ``chalicelib``.

Every route goes through :func:`route`, which maps the services' domain errors to
Chalice's error responses in one place (``chalicelib.errors.to_chalice_error``) and, for
the ``/images`` routes, attaches the ``jwt_auth`` authorizer when ``AUTH_MODE`` asks for
it and refuses (401) a request without a principal whenever ``AUTH_MODE`` is not ``none``
(``chalicelib.auth``). Every response the app makes, errors included, carries
``X-Content-Type-Options: nosniff`` (:func:`no_sniffing`). :func:`route` also declares
the path's ``OPTIONS`` (CORS preflight, never behind the authorizer), and
:func:`add_cors_headers` adds the CORS response headers to every answer
(``chalicelib.cors``: why not Chalice's ``CORSConfig``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import (
    AuthRequest,
    AuthResponse,
    Chalice,
    CloudWatchEvent,
    NotFoundError,
    Rate,
    Request,
    Response,
    S3Event,
)

from chalicelib import auth, web
from chalicelib.config import Settings, cors_allow_origins
from chalicelib.cors import CorsPolicy, ResponseHeaders, merge_vary
from chalicelib.errors import (
    ImageServiceError,
    MissingIdentityError,
    NotOwnerError,
    ServiceUnavailableError,
    to_chalice_error,
)
from chalicelib.openapi import openapi_document
from chalicelib.service import ImageService
from chalicelib.storage import UPLOAD_PREFIX, upload_bucket_name
from chalicelib.sweep import Sweep
from chalicelib.uploads import COMPLETE_RETRY_AFTER_SECONDS, UploadInProgress
from chalicelib.validation import (
    entity_tag,
    parse_if_match,
    parse_image_patch,
    parse_json_object,
    parse_list_query,
    parse_upload,
    parse_upload_start,
    parse_view_options,
    validate_user_id,
)

app = Chalice(app_name="image-service")
# API Gateway passes these bodies through as bytes instead of mangling them as text.
app.api.binary_types.append("multipart/form-data")

#: Headers every response carries: browsers must not guess another type than the one
#: declared (a JSON error echoing input must never be sniffed as HTML).
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


@app.middleware("http")
def no_sniffing(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Add :data:`SECURITY_HEADERS` to every HTTP response: each route's, including those
    added later, its errors, Chalice's own (405, 415) and the 500 of an unhandled
    exception (Chalice's error handler runs inside this middleware)."""
    response = get_response(event)
    response.headers.update(SECURITY_HEADERS)
    return response


@app.authorizer(ttl_seconds=0)
def jwt_auth(auth_request: AuthRequest) -> AuthResponse:
    """API Gateway TOKEN authorizer of ``AUTH_MODE=jwt``: ``Authorization: Bearer <JWT>``.

    A valid token (``chalicelib.auth.verify_token``) may call every route as its ``sub``,
    which the views read as ``context.authorizer.principalId``; anything else is a 401.
    ``ttl_seconds=0``: API Gateway caches no answer, so a token stops working at ``exp``.
    """
    return AuthResponse(routes=["*"], principal_id=auth.authorize(auth_request.token))


#: The authorizer on the ``/images`` and ``/uploads`` routes, decided at import from
#: ``AUTH_MODE`` (``chalicelib.auth.declares_authorizer``); ``/health`` and the docs stay
#: open.
IMAGES_AUTHORIZER = jwt_auth if auth.declares_authorizer() else None

_service: ImageService | None = None


def image_service() -> ImageService:
    """The process-wide service, built from the environment on first use.

    Tests replace it with :func:`use_service`.
    """
    global _service
    if _service is None:
        _service = ImageService.from_settings(Settings.from_env())
    return _service


def use_service(service: ImageService | None) -> None:
    """Install ``service`` for the following requests (None: rebuild from the environment)."""
    global _service
    _service = service


def _headers(headers: Mapping[str, str]) -> ResponseHeaders:
    """``headers`` as the mapping type Chalice's ``Response`` wants."""
    return dict(headers)


#: The methods each path answers, filled in by :func:`route`; read by the preflight.
#: (Quoted: Chalice's policy analyzer, run by ``chalice package``/``deploy`` for stages
#: with ``autogen_policy``, fails on a builtin named only in a module-level annotation.)
_PATH_METHODS: "dict[str, set[str]]" = {}  # noqa: UP037


def _cors_policy() -> CorsPolicy:
    """The installed service's CORS origins; before one is built, ``CORS_ALLOW_ORIGINS``
    itself (so a route that needs no AWS client builds none)."""
    if _service is not None:
        return CorsPolicy(_service.settings.cors_allow_origins)
    return CorsPolicy(cors_allow_origins())


def cors_preflight(**_path_parameters: str) -> Response:
    """``OPTIONS`` on any path: the CORS preflight answer (204), from ``CORS_ALLOW_ORIGINS``.

    An allowed origin asking for one of the path's methods gets the allow-* headers; any
    other request gets none, which the browser takes as a refusal.
    """
    request = _request()
    methods = _PATH_METHODS.get(str(request.context.get("resourcePath", "")), set())
    headers = _cors_policy().preflight_headers(
        request.headers.get("origin"),
        request.headers.get("access-control-request-method"),
        methods,
    )
    headers["Allow"] = ", ".join(sorted(methods | {"OPTIONS"}))
    return Response(body="", status_code=204, headers=_headers(headers))


@app.middleware("http")
def add_cors_headers(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Every response (errors included) gets the CORS headers of its request's ``Origin``.

    The preflight's own headers are left as :func:`cors_preflight` set them.
    """
    response = get_response(event)
    if event.method == "OPTIONS":
        return response
    extra = _cors_policy().response_headers(event.headers.get("origin"))
    if extra:
        response.headers = merge_vary(response.headers, extra)
    return response


def route(path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.route`` that turns :class:`ImageServiceError` into Chalice's error response.

    Routes under ``/images`` and ``/uploads`` are authenticated: they carry
    :data:`IMAGES_AUTHORIZER`, and
    unless ``AUTH_MODE`` is ``none`` a request without a principal is a 401 even if the
    gateway let it through. The first route on a path also declares its ``OPTIONS``
    (:func:`cors_preflight`, no authorizer).
    """
    authenticated = path.split("/")[1] in ("images", "uploads")
    if authenticated:
        options.setdefault("authorizer", IMAGES_AUTHORIZER)
    if path not in _PATH_METHODS:
        _PATH_METHODS[path] = set()
        app.route(path, methods=["OPTIONS"])(cors_preflight)
    _PATH_METHODS[path].update(method.upper() for method in options.get("methods", ["GET"]))

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def view_with_errors(*args: Any, **kwargs: Any) -> Any:
            try:
                if authenticated:
                    _require_principal()
                return view(*args, **kwargs)
            except ImageServiceError as exc:
                raise to_chalice_error(exc) from exc

        app.route(path, **options)(view_with_errors)
        return view

    return register


def _request() -> Request:
    request = app.current_request
    assert request is not None, "only called while Chalice handles a request"
    return request


def _body() -> bytes:
    raw = _request().raw_body
    return raw if isinstance(raw, bytes) else raw.encode()


def _query_params() -> dict[str, list[str]]:
    params = _request().query_params
    return {} if params is None else {name: params.getlist(name) for name in params}


def _caller() -> str | None:
    """Who is calling: the authenticated principal unless ``AUTH_MODE`` is ``none``
    (``chalicelib.auth.principal``), otherwise the ``X-User-Id`` header, the ``user_id``
    query parameter, or ``user_id`` in a JSON body.

    Raises:
        InvalidInputError: (``none`` mode) the identity given is not a valid user id
            (naming ``X-User-Id`` or ``user_id``), or a JSON body is malformed (``body``).
    """
    request = _request()
    mode = image_service().settings.auth_mode
    if mode != "none":
        return auth.principal(mode, request.context)
    header = request.headers.get("x-user-id")
    if header:
        return validate_user_id(header, "X-User-Id")
    caller: object = _query_params().get("user_id", [None])[0] or None
    if caller is None and _body() and "json" in request.headers.get("content-type", ""):
        caller = parse_json_object(_body()).get("user_id") or None
    return None if caller is None else validate_user_id(caller)


def _require_principal() -> None:
    """401 for a request without an authenticated principal, unless ``AUTH_MODE=none``."""
    if image_service().settings.auth_mode != "none" and _caller() is None:
        raise MissingIdentityError("Authorization: no authenticated principal")


@route("/images", methods=["POST"], content_types=["multipart/form-data", "application/json"])
@route(
    "/images/upload", methods=["POST"], content_types=["multipart/form-data", "application/json"]
)
def upload_image() -> Response:
    """Upload an image (multipart/form-data or JSON with base64); 201 with the record."""
    request = _request()
    service = image_service()
    authenticated = service.settings.auth_mode != "none"
    caller = _caller() if authenticated else request.headers.get("x-user-id")
    upload = parse_upload(
        _body(),
        request.headers.get("content-type", ""),
        max_request_bytes=service.settings.max_request_bytes,
        default_user_id=caller,
    )
    if authenticated and upload.user_id != caller:
        raise NotOwnerError("user_id: must be the authenticated principal or absent")
    record = service.upload(upload)
    return Response(
        body=record.to_dict(), status_code=201, headers={"Location": f"/images/{record.image_id}"}
    )


@route("/uploads", methods=["POST"], content_types=["application/json"])
def start_upload() -> Response:
    """Start a direct upload: 201 with the S3 presigned POST the client sends the bytes with."""
    service = image_service()
    authenticated = service.settings.auth_mode != "none"
    caller = _caller() if authenticated else _request().headers.get("x-user-id")
    start = parse_upload_start(_body(), service.settings.max_image_bytes, default_user_id=caller)
    if authenticated and start.user_id != caller:
        raise NotOwnerError("user_id: must be the authenticated principal or absent")
    body = service.uploads.start(start)
    return Response(
        body=body, status_code=201, headers={"Location": f"/uploads/{body['upload_id']}"}
    )


@route("/uploads/{upload_id}", methods=["GET"])
def upload_status(upload_id: str) -> dict[str, Any]:
    """Where a direct upload stands: pending, ready (with the image), rejected, expired."""
    return image_service().uploads.status(upload_id)


@route(
    "/uploads/{upload_id}/complete",
    methods=["POST"],
    content_types=["application/json", "application/x-www-form-urlencoded", "text/plain"],
)
def complete_upload(upload_id: str) -> Response:
    """Process the uploaded object now: 201 with the record (200 if already completed,
    or by the arrival that held the work); 202 with the upload's status when that one
    is still processing it after the wait, pointing at ``GET /uploads/{id}``."""
    ingested = image_service().uploads.complete(upload_id, _caller())
    if isinstance(ingested, UploadInProgress):
        return Response(
            body=ingested.status,
            status_code=202,
            headers={
                "Location": f"/uploads/{upload_id}",
                "Retry-After": str(COMPLETE_RETRY_AFTER_SECONDS),
            },
        )
    record = ingested.record
    return Response(
        body=record.to_dict(),
        status_code=201 if ingested.created else 200,
        headers={"Location": f"/images/{record.image_id}"},
    )


@route("/images", methods=["GET"])
def list_images() -> dict[str, Any]:
    """List images newest first, filtered by user, tags, dates and title."""
    return image_service().list_images(parse_list_query(_query_params()))


@route("/images/{image_id}", methods=["GET"])
def view_image(image_id: str) -> Response:
    """An image's record with a presigned ``download_url``; ``ETag`` is its version."""
    service = image_service()
    options = parse_view_options(_query_params(), service.settings.url_expires_seconds)
    body = service.view(image_id, options)
    return Response(body=body, status_code=200, headers={"ETag": entity_tag(body["version"])})


@route("/images/{image_id}", methods=["PATCH"], content_types=["application/json"])
def edit_image(image_id: str) -> Response:
    """Edit title, description, tags or metadata (owner only); ``If-Match`` makes it
    conditional on the version read (412 otherwise). 200 with the record and its ETag."""
    request = _request()
    patch = parse_image_patch(_body())
    if_match = parse_if_match(request.headers.get("if-match"))
    record = image_service().edit(image_id, patch, _caller(), if_match)
    return Response(
        body=record.to_dict(), status_code=200, headers={"ETag": entity_tag(record.version)}
    )


@route("/images/{image_id}/download", methods=["GET"])
def download_image(image_id: str) -> Response:
    """302 to a presigned URL that downloads the image as an attachment.

    The body is a line of plain text saying so (Chalice and API Gateway would otherwise
    declare an empty body ``application/json``)."""
    url = image_service().download_url(image_id)
    return Response(
        body="Found: the image downloads from the URL in Location\n",
        status_code=302,
        headers={"Location": url, "Content-Type": "text/plain; charset=utf-8"},
    )


@route("/images/{image_id}", methods=["DELETE"])
def delete_image(image_id: str) -> dict[str, str]:
    """Delete an image (owner only): metadata, then the S3 object."""
    image_service().delete(image_id, _caller())
    return {"message": "Image deleted", "image_id": image_id}


@route("/health", methods=["GET"])
def health() -> dict[str, str]:
    """200 ``{"status": "ok"}`` when bucket and table answer, else 503 naming the failure."""
    checks = image_service().health()
    failing = {name: result for name, result in checks.items() if result != "ok"}
    if failing:
        raise ServiceUnavailableError(
            "; ".join(f"{name}: {result}" for name, result in failing.items())
        )
    return {"status": "ok"}


@route("/", methods=["GET"])
def web_page() -> Response:
    """The web gallery (``chalicelib/web``): HTML with its Content-Security-Policy."""
    service = image_service()
    csp = web.content_security_policy(web.bucket_origins(service.urls, service.storage))
    page = web.render_page(service.settings.auth_mode, web.base_href(_request().context))
    return Response(body=page, status_code=200, headers=_headers(web.page_headers(csp)))


@route("/assets/{name}", methods=["GET"])
def web_asset(name: str) -> Response:
    """A static file of the gallery (JS, CSS, icon); 304 when ``If-None-Match`` matches;
    cached for a year when ``?v=`` is its current version."""
    found = web.asset(name)
    if found is None:
        raise NotFoundError(f"asset: no file named {name!r}")
    versions = _query_params().get("v", [])
    headers = _headers(web.asset_headers(found, versions[0] if len(versions) == 1 else None))
    if web.not_modified(found, _request().headers.get("if-none-match")):
        return Response(body="", status_code=304, headers=headers)
    return Response(body=found.body, status_code=200, headers=headers)


@route("/openapi.json", methods=["GET"])
def openapi() -> dict[str, Any]:
    """The OpenAPI 3 document of this API (``chalicelib/openapi.yaml``), as JSON."""
    return openapi_document()


@app.on_s3_event(bucket=upload_bucket_name(), events=["s3:ObjectCreated:*"], prefix=UPLOAD_PREFIX)
def on_upload_created(event: S3Event) -> None:
    """S3 notification for an object created under ``uploads/``: ingest that upload,
    exactly as ``POST /uploads/{upload_id}/complete`` does (idempotent; S3 delivers
    at least once)."""
    image_service().uploads.on_object_created(event.key)


@app.schedule(Rate(1, unit=Rate.HOURS))
def sweep(event: CloudWatchEvent) -> None:
    """Hourly: a few bounded, resumable slices of the sweep (``chalicelib.sweep``), as
    many as the function's remaining time allows."""
    context = event.context
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    Sweep.scheduled(image_service()).run(time_left_ms=remaining)
