"""Errors of the merchant simulator, each with a status and a stable code."""

from __future__ import annotations

from app.core.http import ApiError


class SimError(ApiError):
    """A merchant-side failure reported to the caller as JSON."""


class Unauthorized(SimError):
    status = 401
    code = "unauthorized"


class NotFound(SimError):
    status = 404
    code = "not_found"


class ValidationFailed(SimError):
    status = 422
    code = "validation_failed"


class UpstreamError(SimError):
    """Ventra could not be reached or failed; the URL tried is in the message."""

    status = 502
    code = "ventra_unreachable"
