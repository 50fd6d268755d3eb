"""Request and response models: they validate input and feed the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# R$ 1.000.000,00: the largest amount one sandbox order may carry.
MAX_AMOUNT = 100_000_000
Environment = Literal["local", "sandbox", "staging"]
Centavos = Annotated[
    StrictInt,
    Field(gt=0, le=MAX_AMOUNT, description="Amount in integer centavos (BRL)."),
]


class Strict(BaseModel):
    """Base of request models: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")


class CreateOrder(Strict):
    """Body of ``POST /v1/orders``."""

    amount: Centavos
    description: Annotated[StrictStr, Field(max_length=200)] | None = None
    env: Environment = "local"
    expires_in: Annotated[StrictInt, Field(ge=1, le=30 * 24 * 3600)] = 3600


class Refund(Strict):
    """Body of ``POST /v1/orders/{id}/refund``; no amount refunds all that is held."""

    amount: Centavos | None = None
    reason: Annotated[StrictStr, Field(max_length=200)] | None = None


class PixPay(Strict):
    """Body of ``POST /v1/pix/pay``: the pasted "copia e cola" payload."""

    br_code: Annotated[StrictStr, Field(min_length=8, max_length=512)]


class UpdateEndpoint(Strict):
    """Body of ``PUT /v1/webhook-endpoints/{env}``."""

    url: Annotated[StrictStr, Field(max_length=2048)] | None = None
    secret: Annotated[StrictStr, Field(min_length=8, max_length=256)] | None = None
    enabled: StrictBool | None = None


class BulkRetry(Strict):
    """Body of ``POST /v1/events/retry``: failed deliveries to queue again."""

    env: Environment
    since: datetime


class RotateKey(Strict):
    """Body of ``POST /settings/api-key``; no key generates one."""

    api_key: Annotated[StrictStr, Field(min_length=16, max_length=128)] | None = None


class Charge(BaseModel):
    """The Pix charge of an order."""

    txid: str
    br_code: str
    expires_at: str
    paid_at: str | None
    end_to_end_id: str | None


class Order(BaseModel):
    """An escrow order; amounts in integer centavos."""

    id: str
    env: Environment
    status: Literal["pending_payment", "held", "released", "refunded", "expired"]
    amount: int
    currency: Literal["BRL"]
    held_amount: int
    released_amount: int
    refunded_amount: int
    description: str | None
    created_at: str
    updated_at: str
    charge: Charge


class OrderList(BaseModel):
    """A page of orders, newest first."""

    data: list[Order]


class Error(BaseModel):
    """Every error: a stable code and a message naming the value and the fix."""

    error: str
    message: str
