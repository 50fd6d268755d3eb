"""Tables of the platform database, mapped with SQLAlchemy 2."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime


class Base(DeclarativeBase):
    """Declarative base of the platform's tables."""

    type_annotation_map = {
        datetime: DateTime(timezone=True),
        int: BigInteger,
        str: Text,
        dict[str, Any]: JSONB,
    }


class Order(Base):
    """An escrow order; amounts are integer centavos."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(primary_key=True)
    env: Mapped[str]
    amount: Mapped[int]
    description: Mapped[str | None]
    status: Mapped[str]
    held_amount: Mapped[int] = mapped_column(default=0)
    released_amount: Mapped[int] = mapped_column(default=0)
    refunded_amount: Mapped[int] = mapped_column(default=0)
    last_sequence: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Charge(Base):
    """The Pix charge of an order."""

    __tablename__ = "charges"

    txid: Mapped[str] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), unique=True)
    br_code: Mapped[str]
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    end_to_end_id: Mapped[str | None]


class Event(Base):
    """A domain event, whose ``body`` is the exact bytes sent on every attempt."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(primary_key=True)
    type: Mapped[str]
    env: Mapped[str]
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    sequence: Mapped[int]
    created_at: Mapped[datetime]
    body: Mapped[bytes] = mapped_column(LargeBinary)


class WebhookEndpoint(Base):
    """The webhook endpoint of one environment."""

    __tablename__ = "webhook_endpoints"

    env: Mapped[str] = mapped_column(primary_key=True)
    url: Mapped[str | None]
    secret: Mapped[str]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None]
    updated_at: Mapped[datetime]


class Delivery(Base):
    """The delivery of one event to its environment's endpoint."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), unique=True)
    env: Mapped[str]
    order_id: Mapped[str]
    sequence: Mapped[int]
    status: Mapped[str]
    attempt_count: Mapped[int] = mapped_column(default=0)
    schedule: Mapped[str]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_http_status: Mapped[int | None]
    last_error_kind: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeliveryAttempt(Base):
    """One POST of an event, or one that a crash cut off."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"))
    event_id: Mapped[str]
    number: Mapped[int]
    trigger: Mapped[str]
    status: Mapped[str]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    latency_ms: Mapped[int | None]
    http_status: Mapped[int | None]
    error_kind: Mapped[str | None]
    error_message: Mapped[str | None]
    response_excerpt: Mapped[str | None]
    location: Mapped[str | None]
    request_headers: Mapped[dict[str, Any]]
    endpoint_url: Mapped[str]
    endpoint_env: Mapped[str]
    secret_fingerprint: Mapped[str]


class LedgerAccount(Base):
    """A ledger account; ``normal_side`` is the side that increases it."""

    __tablename__ = "ledger_accounts"

    code: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    normal_side: Mapped[str]


class LedgerTransaction(Base):
    """A balanced group of ledger entries; never changed once written."""

    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(primary_key=True)
    order_id: Mapped[str | None]
    kind: Mapped[str]
    created_at: Mapped[datetime]


class LedgerEntry(Base):
    """A debit or credit of one account; append-only at the database."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"))
    account_code: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.code"))
    direction: Mapped[str]
    amount: Mapped[int]


class IdempotencyRecord(Base):
    """The first response to a POST carrying an ``Idempotency-Key``."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(primary_key=True)
    method: Mapped[str] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(primary_key=True)
    request_hash: Mapped[str]
    status: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
