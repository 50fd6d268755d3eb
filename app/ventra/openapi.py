"""The OpenAPI 3 document of Ventra's API."""

from __future__ import annotations

from typing import Any

from app import __version__


def build_openapi() -> dict[str, Any]:
    """Return the OpenAPI document."""
    # TODO: generate paths and schemas from the request and response models.
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ventra API", "version": __version__},
        "paths": {},
    }
