"""Request models of VentraSim's management API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointUpdate(Strict):
    """Body of ``PUT /api/endpoints/{env}``."""

    secret: Annotated[StrictStr, Field(max_length=256)] | None = None
    mode: Literal["normal", "offline", "timeout", "flaky", "slow", "status"] | None = (
        None
    )
    options: dict[str, Any] | None = None


class Connection(Strict):
    """Body of ``PUT /api/connection``: how the merchant reaches Ventra."""

    # A scheme and at least one host character, with no whitespace.
    base_url: (
        Annotated[StrictStr, Field(max_length=2048, pattern=r"^https?://[^\s/?#]+\S*$")]
        | None
    ) = None
    # Printable ASCII only: the key travels in an HTTP header.
    api_key: (
        Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[!-~]+$")]
        | None
    ) = None


class DevOrder(Strict):
    """Body of ``POST /api/dev/orders``; validated again by Ventra."""

    amount: StrictInt
    env: Literal["local", "sandbox", "staging"] = "local"
    description: Annotated[StrictStr, Field(max_length=200)] | None = None


class DevRefund(Strict):
    """Body of ``POST /api/dev/orders/{id}/refund``."""

    amount: StrictInt | None = None
    reason: Annotated[StrictStr, Field(max_length=200)] | None = None
