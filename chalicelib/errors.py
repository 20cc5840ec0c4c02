"""Domain errors of the image service, and their one mapping to HTTP.

The services in ``chalicelib`` raise these, never HTTP errors, so they can be used from
the reconcile command and tests without Chalice. ``app.py`` turns them into Chalice's
error classes with :func:`to_chalice_error`; Chalice renders those as
``{"Code": "<class name>", "Message": "..."}`` with the class's status code.
"""

from __future__ import annotations

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


class ServiceUnavailableError(ChaliceViewError):
    """HTTP 503: a dependency (bucket or table) does not answer."""

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
    """The bytes are not a decodable JPEG, PNG, GIF or WebP image (415)."""


class MissingIdentityError(ImageServiceError):
    """No caller identity was given where one is required (401)."""


class NotOwnerError(ImageServiceError):
    """The caller is not the owner of the image (403)."""


class ImageNotFoundError(ImageServiceError):
    """No image has the requested id (404)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"image_id: no image with id {image_id!r}")
        self.image_id = image_id


class WriteConflictError(ImageServiceError):
    """A conditional write lost a race with another request (409)."""


_HTTP_ERRORS: list[tuple[type[ImageServiceError], type[ChaliceViewError]]] = [
    # Subclasses before their bases: the first match wins.
    (PayloadTooLargeError, RequestEntityTooLargeError),
    (UnsupportedImageError, UnsupportedMediaTypeError),
    (InvalidInputError, BadRequestError),
    (MissingIdentityError, UnauthorizedError),
    (NotOwnerError, ForbiddenError),
    (ImageNotFoundError, NotFoundError),
    (WriteConflictError, ConflictError),
]


def to_chalice_error(error: ImageServiceError) -> ChaliceViewError:
    """The Chalice error (status code + ``Code``) that reports ``error`` to the client."""
    for domain_class, http_class in _HTTP_ERRORS:
        if isinstance(error, domain_class):
            return http_class(str(error))
    return ChaliceViewError(str(error))
