"""Domain errors of the image service, and their one mapping to HTTP.

The services in ``chalicelib`` raise these, never HTTP errors, so they can be used from
the reconcile command and tests without Chalice. ``app.py`` turns them into Chalice's
error classes with :func:`to_chalice_error`; Chalice renders those as
``{"Code": "<class name>", "Message": "..."}`` with the class's status code.
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as AwsConnectionError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker
from chalice.app import (
    BadRequestError,
    ChaliceViewError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
)


class RequestEntityTooLargeError(ChaliceViewError):
    """HTTP 413: Chalice has no class for it."""

    STATUS_CODE = 413


class UnsupportedMediaTypeError(ChaliceViewError):
    """HTTP 415: Chalice has no class for it (its own 415 is only for route content types)."""

    STATUS_CODE = 415


class GoneError(ChaliceViewError):
    """HTTP 410: Chalice has no class for it (an upload whose presigned POST expired)."""

    STATUS_CODE = 410


class PreconditionFailedError(ChaliceViewError):
    """HTTP 412: Chalice has no class for it (``If-Match`` names a version the image no
    longer has)."""

    STATUS_CODE = 412


class ServiceUnavailableError(ChaliceViewError):
    """HTTP 503: a dependency (bucket or table) does not answer, fails, or throttles."""

    STATUS_CODE = 503


class ImageServiceError(Exception):
    """Base of every error the service raises on purpose; ``str(exc)`` is shown to the client."""


class InvalidInputError(ImageServiceError):
    """A request field is missing or malformed (400).

    Attributes:
        field: the request field at fault, e.g. ``"tags"`` or ``"limit"``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class PayloadTooLargeError(InvalidInputError):
    """The image is larger than allowed in bytes or pixels (413)."""


class UnsupportedImageError(InvalidInputError):
    """The bytes are not a decodable image of an accepted type (415)."""


class MissingIdentityError(ImageServiceError):
    """No caller identity was given where one is required (401)."""


class NotOwnerError(ImageServiceError):
    """The caller is not the owner of the image (403)."""


class ImageNotFoundError(ImageServiceError):
    """No image has the requested id (404)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"image_id: no image with id {image_id!r}")
        self.image_id = image_id


class ImageChangedError(ImageServiceError):
    """An edit's ``If-Match`` names none of the image's current version (412)."""


class WriteConflictError(ImageServiceError):
    """A conditional write lost a race with another request (409)."""


class UploadNotFoundError(ImageServiceError):
    """No direct upload has the requested id (404)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload_id: no upload with id {upload_id!r}")
        self.upload_id = upload_id


class UploadNotReceivedError(ImageServiceError):
    """``complete`` was called before the bytes reached the bucket (409)."""


class UploadExpiredError(ImageServiceError):
    """The upload's presigned POST expired before its bytes arrived (410)."""


class UploadRejectedError(ImageServiceError):
    """The upload was rejected earlier; repeats that rejection's status and message.

    Attributes:
        code: the Chalice error class name first answered, e.g.
            ``"UnsupportedMediaTypeError"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


#: What a boto3 call raises when S3 or DynamoDB fails rather than our code: an error
#: answer (``ClientError``), or no usable answer (connection refused or reset, connect or
#: read timeout). Programming errors (``ParamValidationError``, ...) are not in it.
AWS_CALL_FAILURES: tuple[type[Exception], ...] = (ClientError, AwsConnectionError, HTTPClientError)

_THROTTLING = ThrottledRetryableChecker()


#: Error answers after which the call may still have been applied: the service failed
#: while it handled the request (DynamoDB documents that after a 500 the request may or
#: may not have succeeded). Throttling and validation errors are refusals: not applied.
SERVER_FAULT_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "InternalError", "ServiceUnavailable"}
)


def may_have_taken_effect(error: BaseException) -> bool:
    """Whether a failed call may still have been applied: its request was sent but no
    answer came back (a read timeout, a connection closed mid-answer), or the service
    answered that it failed while handling it (:data:`SERVER_FAULT_CODES`). Any other
    error answer, or a connection that was never made, means it was not."""
    if isinstance(error, ClientError):
        return aws_error_code(error) in SERVER_FAULT_CODES
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return False
    return isinstance(error, HTTPClientError)


class OutcomeUnknownError(Exception):
    """A write whose answer was lost on at least one attempt: it may have been applied,
    now or later. ``__cause__`` is the last attempt's error."""


def aws_error_code(error: Exception) -> str:
    """The AWS error code of a ``ClientError`` (``"SlowDown"``), else the exception's
    class name (``"ReadTimeoutError"``)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__


def cancellation_reasons(error: Exception) -> list[str]:
    """The per-item codes of a ``TransactionCanceledException`` (``"None"``,
    ``"ConditionalCheckFailed"``, ``"ThrottlingError"``, ``"TransactionConflict"``, ...);
    empty for any other error."""
    if not isinstance(error, ClientError):
        return []
    reasons = error.response.get("CancellationReasons") or []
    return [str(reason.get("Code", "")) for reason in reasons]


def is_throttling(error: Exception) -> bool:
    """Whether ``error`` is S3 or DynamoDB refusing for lack of capacity: one of the codes
    botocore's standard retry mode treats as throttling (``SlowDown``,
    ``ProvisionedThroughputExceededException``, ``ThrottlingException``, ...), or a
    transaction cancelled because an item was throttled."""
    if not isinstance(error, ClientError):
        return False
    context = RetryContext(attempt_number=1, parsed_response=error.response)
    return bool(_THROTTLING.is_retryable(context)) or "ThrottlingError" in cancellation_reasons(
        error
    )


class DependencyError(ImageServiceError):
    """S3 or DynamoDB failed, after the client's retries (503).

    The message names the dependency first, then the step, the AWS error code, and what
    the failure left behind for the client, e.g.
    ``"s3: storing the image failed (SlowDown, throttled); the image was not saved; retry"``.

    Args:
        dependency: ``"s3"`` or ``"dynamodb"``.
        step: what was being done, e.g. ``"saving the image's metadata"``.
        error: what the boto3 call raised (one of :data:`AWS_CALL_FAILURES`).
        outcome: the state the request leaves, and what the client should do.

    Attributes:
        dependency: as given.
        code: see :func:`aws_error_code`.
        throttled: see :func:`is_throttling`.
    """

    def __init__(self, dependency: str, step: str, error: Exception, outcome: str) -> None:
        self.dependency = dependency
        self.code = aws_error_code(error)
        self.throttled = is_throttling(error)
        reason = f"{self.code}, throttled" if self.throttled else self.code
        super().__init__(f"{dependency}: {step} failed ({reason}); {outcome}")


_HTTP_ERRORS: list[tuple[type[ImageServiceError], type[ChaliceViewError]]] = [
    # Subclasses before their bases: the first match wins.
    (PayloadTooLargeError, RequestEntityTooLargeError),
    (UnsupportedImageError, UnsupportedMediaTypeError),
    (InvalidInputError, BadRequestError),
    (MissingIdentityError, UnauthorizedError),
    (NotOwnerError, ForbiddenError),
    (ImageNotFoundError, NotFoundError),
    (WriteConflictError, ConflictError),
    (ImageChangedError, PreconditionFailedError),
    (UploadNotFoundError, NotFoundError),
    (UploadNotReceivedError, ConflictError),
    (UploadExpiredError, GoneError),
    # Throttling too: the capacity that ran out is the service's, shared by every
    # caller, not this caller's quota, so 503 (RFC 9110 15.6.4), not 429.
    (DependencyError, ServiceUnavailableError),
]


def error_code(error: ImageServiceError) -> str:
    """The ``Code`` the client sees for ``error``: the name of its Chalice error class."""
    return type(to_chalice_error(error)).__name__


def to_chalice_error(error: ImageServiceError) -> ChaliceViewError:
    """The Chalice error (status code + ``Code``) that reports ``error`` to the client."""
    if isinstance(error, UploadRejectedError):
        for _, http_class in _HTTP_ERRORS:
            if http_class.__name__ == error.code:
                return http_class(str(error))
        return BadRequestError(str(error))
    for domain_class, http_class in _HTTP_ERRORS:
        if isinstance(error, domain_class):
            return http_class(str(error))
    return ChaliceViewError(str(error))
