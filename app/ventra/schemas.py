"""Request and response models: they validate input and feed the OpenAPI document."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from app.core.config import HTTP_URL_RULE, is_http_url
from app.core.http import DATETIME_RULE

# R$ 1.000.000,00: the largest amount one sandbox order may carry.
MAX_AMOUNT = 100_000_000
MAX_EXPIRES_IN = 30 * 24 * 3600
Environment = Literal["local", "sandbox", "staging"]
OrderStatus = Literal["pending_payment", "held", "released", "refunded", "expired"]
EventType = Literal[
    "charge.created",
    "charge.paid",
    "charge.expired",
    "escrow.held",
    "escrow.released",
    "escrow.refunded",
]
Centavos = Annotated[
    StrictInt,
    Field(
        gt=0,
        le=MAX_AMOUNT,
        description="Amount in integer centavos (BRL), written without a fraction"
        " part or exponent: 100.0 and 1e3 are rejected.",
    ),
]
# Ids are a prefix, an underscore and alphanumerics (see app/ventra/ids.py).
ID_REGEX = r"^[A-Za-z0-9_]{1,64}$"
# Free text is stored in text columns, which cannot contain NUL.
TEXT_REGEX = r"^[^\x00]*$"
# A secret is signed byte for byte: no control characters (C0, DEL, C1), and
# no whitespace at either end, which a copy and paste adds by mistake. The
# classes are spelled out because \s differs between regex dialects:
# Python's and pydantic's match U+0085, JSON Schema's (ECMA-262) does not.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f"
SPACE_CHARS = r"\x20\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
SECRET_REGEX = (
    rf"^[^{CONTROL_CHARS}{SPACE_CHARS}]"
    rf"([^{CONTROL_CHARS}]*[^{CONTROL_CHARS}{SPACE_CHARS}])?$"
)
Text200 = Annotated[StrictStr, Field(max_length=200, pattern=TEXT_REGEX)]
Identifier = Annotated[str, Field(pattern=ID_REGEX)]


class Strict(BaseModel):
    """Base of request bodies: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Base of query strings: values arrive as text and are converted.

    Unknown parameters are rejected like unknown body fields, so a typo in
    a filter name is an error instead of an unfiltered list.
    """

    model_config = ConfigDict(extra="forbid")


# Request bodies.


class CreateOrder(Strict):
    """Body of ``POST /v1/orders``."""

    amount: Centavos
    description: Text200 | None = None
    env: Environment = "local"
    expires_in: Annotated[
        StrictInt,
        Field(ge=1, le=MAX_EXPIRES_IN, description="Seconds until the charge expires."),
    ] = 3600


class Refund(Strict):
    """Body of ``POST /v1/orders/{id}/refund``; no amount refunds all that is held."""

    amount: Centavos | None = None
    reason: Text200 | None = None


class PixPay(Strict):
    """Body of ``POST /v1/pix/pay``: the pasted "copia e cola" payload."""

    br_code: Annotated[StrictStr, Field(min_length=8, max_length=512)]


def check_http_url(value: str) -> str:
    """Reject a URL that no attempt could reach: an invalid host, or a bad port."""
    if not is_http_url(value):
        raise ValueError(f"must be {HTTP_URL_RULE}")
    return value


class UpdateEndpoint(Strict):
    """Body of ``PUT /v1/webhook-endpoints/{env}``."""

    url: (
        Annotated[
            StrictStr,
            # The pattern is for the OpenAPI document; check_http_url
            # enforces it with a message that names the rule.
            Field(
                max_length=2048,
                json_schema_extra={"pattern": r"^https?://[\x21-\x7e]+$"},
            ),
            AfterValidator(check_http_url),
        ]
        | None
    ) = None
    secret: (
        Annotated[
            StrictStr,
            Field(min_length=8, max_length=256, pattern=SECRET_REGEX),
        ]
        | None
    ) = None
    enabled: StrictBool | None = None


# The start of an RFC 3339 date-time: a date, then the time.
DATE_AND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d")


def require_text(value: Any) -> Any:
    """Reject anything but a date and time, such as a number read as a Unix time."""
    if not isinstance(value, str) or not DATE_AND_TIME.match(value):
        raise ValueError(f"must be {DATETIME_RULE}")
    return value


class BulkRetry(Strict):
    """Body of ``POST /v1/events/retry``: failed deliveries to queue again."""

    env: Environment
    since: Annotated[AwareDatetime, BeforeValidator(require_text)]


class RotateKey(Strict):
    """Body of ``POST /settings/api-key``; no key generates one."""

    api_key: (
        Annotated[
            StrictStr,
            Field(min_length=16, max_length=128, pattern=r"^[\x21-\x7e]+$"),
        ]
        | None
    ) = None


# Query strings.


class Limit(Query):
    """A page size."""

    limit: Annotated[int, Field(ge=1, le=500)] = 50


class OrderQuery(Limit):
    """Query of ``GET /v1/orders``."""

    env: Environment | None = None
    status: OrderStatus | None = None


class EventQuery(Limit):
    """Query of ``GET /v1/events``."""

    order_id: Identifier | None = None
    type: EventType | None = None
    env: Environment | None = None
    starting_after: Annotated[
        Identifier | None,
        Field(description="An event id; the page starts after it."),
    ] = None


class TransactionQuery(Query):
    """Query of ``GET /v1/ledger/transactions``."""

    order_id: Identifier | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


# Responses.


class Health(BaseModel):
    """Liveness of the server."""

    status: Literal["ok"]
    service: str


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
    status: OrderStatus
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


class DeliveryState(BaseModel):
    """The state of the webhook delivery of one event."""

    id: str
    event_id: str
    env: Environment
    status: Literal["pending", "in_flight", "delivered", "failed", "cancelled"]
    attempt_count: int
    schedule: str
    next_attempt_at: str | None
    last_http_status: int | None
    last_error_kind: str | None


class Event(BaseModel):
    """A domain event as sent to the webhook endpoint, with its delivery."""

    id: str
    type: EventType
    created_at: str
    env: Environment
    order_id: str
    sequence: int
    data: dict[str, Any]
    delivery: DeliveryState


class EventList(BaseModel):
    """A page of events, newest first."""

    data: list[Event]


class AttemptEndpoint(BaseModel):
    """The endpoint an attempt was sent to; the secret only as a fingerprint."""

    url: str
    env: str
    secret_fingerprint: str


class Attempt(BaseModel):
    """One POST of an event."""

    id: int
    delivery_id: str
    event_id: str
    attempt: int
    trigger: Literal["automatic", "manual"]
    status: str
    started_at: str
    finished_at: str | None
    latency_ms: int | None
    http_status: int | None
    error_kind: str | None
    error_message: str | None
    response_excerpt: str | None
    location: str | None
    request_headers: dict[str, Any]
    endpoint: AttemptEndpoint


class EventDeliveries(BaseModel):
    """The delivery of an event with every attempt, oldest first."""

    delivery: DeliveryState
    attempts: list[Attempt]


class RetryResult(BaseModel):
    """The outcome of a manual retry, sent as a new attempt."""

    event_id: str
    delivery_id: str
    attempt: int
    outcome: Literal["succeeded", "failed"]
    http_status: int | None
    latency_ms: int
    error_kind: str | None
    error_message: str | None
    delivery_status: Annotated[
        Literal["pending", "delivered", "failed", "cancelled", "unchanged"],
        Field(
            description="The delivery's status after this attempt. It is"
            " unchanged when the attempt outlived its lease and the delivery had"
            " already moved on."
        ),
    ]


class BulkRetryResult(BaseModel):
    """How many failed deliveries were queued again."""

    env: Environment
    since: str
    queued: int


class Endpoint(BaseModel):
    """The webhook endpoint of one environment."""

    env: Environment
    url: str | None
    enabled: bool
    disabled_reason: str | None
    secret_fingerprint: str
    updated_at: str
    secret: str


class EndpointList(BaseModel):
    """The endpoints of every environment."""

    data: list[Endpoint]


class LedgerAccount(BaseModel):
    """A ledger account with its totals in centavos."""

    code: str
    name: str
    normal_side: Literal["debit", "credit"]
    debits: int
    credits: int
    balance: int


class LedgerAccountList(BaseModel):
    """Every ledger account."""

    data: list[LedgerAccount]


class LedgerEntry(BaseModel):
    """A debit or credit of one account."""

    account: str
    direction: Literal["debit", "credit"]
    amount: int


class LedgerTransaction(BaseModel):
    """A balanced group of entries."""

    id: str
    order_id: str | None
    kind: str
    created_at: str
    entries: list[LedgerEntry]


class LedgerTransactionList(BaseModel):
    """Ledger transactions, newest first."""

    data: list[LedgerTransaction]


class LedgerVerification(BaseModel):
    """The result of checking the ledger invariants."""

    ok: bool
    violations: list[str]
    custody_balance: int
    held_total: int
    transactions: int


class ApiKey(BaseModel):
    """The API key in force after a rotation."""

    api_key: str


class Error(BaseModel):
    """Every error: a stable code and a message naming the value and the fix."""

    error: str
    message: str
