"""Tables of the merchant database, mapped with SQLAlchemy 2."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime


class Base(DeclarativeBase):
    """Declarative base of the merchant's tables."""

    type_annotation_map = {
        datetime: DateTime(timezone=True),
        int: BigInteger,
        str: Text,
        dict[str, Any]: JSONB,
    }


class EndpointSetting(Base):
    """The receiving side of one environment: its secret and failure mode."""

    __tablename__ = "endpoint_settings"

    env: Mapped[str] = mapped_column(primary_key=True)
    secret: Mapped[str | None]
    mode: Mapped[str] = mapped_column(default="normal")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class ReceivedEvent(Base):
    """An event, stored once per ``event_id``; repeats only add attempts."""

    __tablename__ = "received_events"

    event_id: Mapped[str] = mapped_column(primary_key=True)
    type: Mapped[str | None]
    env: Mapped[str]
    order_id: Mapped[str | None]
    sequence: Mapped[int | None]
    payload: Mapped[dict[str, Any]]
    payload_verified: Mapped[bool]
    attempt_count: Mapped[int]
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime]
    last_signature_valid: Mapped[bool]


class Attempt(Base):
    """One webhook request as it arrived, valid or not."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    received_at: Mapped[datetime]
    method: Mapped[str]
    env: Mapped[str]
    known_env: Mapped[bool]
    # [name, value] pairs in the order received, repeated names kept.
    headers: Mapped[list[list[str]]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_size: Mapped[int]
    event_id: Mapped[str | None]
    event_type: Mapped[str | None]
    order_id: Mapped[str | None]
    delivery_attempt: Mapped[int | None]
    signature_valid: Mapped[bool]
    signature_error: Mapped[str | None]
    standard_signature_valid: Mapped[bool | None]
    standard_signature_error: Mapped[str | None]
    parse_error: Mapped[str | None]
    mode: Mapped[str]
    mode_options: Mapped[dict[str, Any]] = mapped_column(JSON)
    status_code: Mapped[int | None]
    held_ms: Mapped[int]
    outcome: Mapped[str]


class MerchantOrder(Base):
    """The merchant's view of an order, built from validly signed events."""

    __tablename__ = "merchant_orders"

    order_id: Mapped[str] = mapped_column(primary_key=True)
    env: Mapped[str]
    status: Mapped[str]
    amount: Mapped[int]
    held_amount: Mapped[int]
    released_amount: Mapped[int]
    refunded_amount: Mapped[int]
    sequence: Mapped[int]
    last_event_id: Mapped[str]
    last_event_type: Mapped[str]
    snapshot: Mapped[dict[str, Any]]
    # When the first validly signed event of the order was stored; never
    # changes, so it orders lists stably.
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Setting(Base):
    """A merchant-side setting such as the saved Ventra connection."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[dict[str, Any]]
