"""The transactional outbox: events written with the change they describe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.ventra.ids import new_id
from app.ventra.models import Charge, Delivery, Event, Order

EVENT_TYPES = (
    "charge.created",
    "charge.paid",
    "charge.expired",
    "escrow.held",
    "escrow.released",
    "escrow.refunded",
)


def rfc3339(moment: datetime) -> str:
    """Format a datetime as RFC 3339 UTC with milliseconds and ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def order_snapshot(order: Order, charge: Charge | None) -> dict[str, Any]:
    """Return the public JSON view of an order and its charge."""
    snapshot: dict[str, Any] = {
        "id": order.id,
        "env": order.env,
        "status": order.status,
        "amount": order.amount,
        "currency": "BRL",
        "held_amount": order.held_amount,
        "released_amount": order.released_amount,
        "refunded_amount": order.refunded_amount,
        "description": order.description,
        "created_at": rfc3339(order.created_at),
        "updated_at": rfc3339(order.updated_at),
    }
    if charge is not None:
        snapshot["charge"] = {
            "txid": charge.txid,
            "br_code": charge.br_code,
            "expires_at": rfc3339(charge.expires_at),
            "paid_at": rfc3339(charge.paid_at) if charge.paid_at else None,
            "end_to_end_id": charge.end_to_end_id,
        }
    return snapshot


def encode_body(envelope: dict[str, Any]) -> bytes:
    """Serialize an event once; these bytes are signed and sent as they are."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


async def emit(
    session: AsyncSession,
    *,
    order: Order,
    charge: Charge | None,
    event_type: str,
    now: datetime,
    schedule: str,
    extra: dict[str, Any] | None = None,
) -> Event:
    """Add an event and its pending delivery to the caller's transaction."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    order.last_sequence += 1
    event_id = new_id("evt")
    data = order_snapshot(order, charge)
    if extra:
        data.update(extra)
    envelope = {
        "id": event_id,
        "type": event_type,
        "created_at": rfc3339(now),
        "env": order.env,
        "order_id": order.id,
        "sequence": order.last_sequence,
        "data": data,
    }
    event = Event(
        id=event_id,
        type=event_type,
        env=order.env,
        order_id=order.id,
        sequence=order.last_sequence,
        created_at=now,
        body=encode_body(envelope),
    )
    session.add(event)
    await session.flush()  # the delivery refers to the event
    session.add(
        Delivery(
            id=new_id("dlv"),
            event_id=event_id,
            env=order.env,
            order_id=order.id,
            sequence=order.last_sequence,
            status="pending",
            attempt_count=0,
            schedule=schedule,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    return event


def event_json(event: Event) -> dict[str, Any]:
    """Return the envelope of a stored event."""
    return json.loads(event.body)
