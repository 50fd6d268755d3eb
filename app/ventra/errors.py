"""Errors of the platform, each mapped to an HTTP status and a stable code."""

from __future__ import annotations

from app.core.http import ApiError


class VentraError(ApiError):
    """A platform failure reported to the API caller as JSON."""


class MalformedRequest(VentraError):
    """The body is not JSON, not UTF-8, or of the wrong content type."""

    status = 400
    code = "malformed_request"


class Unauthorized(VentraError):
    """The API key is missing or wrong."""

    status = 401
    code = "unauthorized"


class Forbidden(VentraError):
    """The request came from another site or host."""

    status = 403
    code = "forbidden"


class NotFound(VentraError):
    """An id that does not exist."""

    status = 404
    code = "not_found"


class StateConflict(VentraError):
    """A transition that the current status does not allow."""

    status = 409
    code = "invalid_state"


class PayloadTooLarge(VentraError):
    """A body over the size limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(VentraError):
    """A body that is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class ValidationFailed(VentraError):
    """A well-formed body whose fields are invalid."""

    status = 422
    code = "validation_failed"


class IdempotencyMismatch(VentraError):
    """An ``Idempotency-Key`` reused with another request body."""

    status = 422
    code = "idempotency_key_reused"


class DeliveryUnavailable(VentraError):
    """A manual retry that cannot be sent (endpoint disabled or unset)."""

    status = 409
    code = "endpoint_unavailable"
