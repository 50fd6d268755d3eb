"""Read-side queries of events and their delivery attempts."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ventra.errors import NotFound
from app.ventra.models import Delivery, DeliveryAttempt, Event


def attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    """Return the API view of one attempt."""
    return {
        "id": attempt.id,
        "delivery_id": attempt.delivery_id,
        "event_id": attempt.event_id,
        "attempt": attempt.number,
        "trigger": attempt.trigger,
        "status": attempt.status,
        "started_at": attempt.started_at.isoformat(),
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "latency_ms": attempt.latency_ms,
        "http_status": attempt.http_status,
        "error_kind": attempt.error_kind,
        "error_message": attempt.error_message,
        "response_excerpt": attempt.response_excerpt,
        "location": attempt.location,
        "request_headers": attempt.request_headers,
        "endpoint": {
            "url": attempt.endpoint_url,
            "env": attempt.endpoint_env,
            "secret_fingerprint": attempt.secret_fingerprint,
        },
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """Return the API view of a delivery."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "env": delivery.env,
        "status": delivery.status,
        "attempt_count": delivery.attempt_count,
        "schedule": delivery.schedule,
        "next_attempt_at": (
            delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None
        ),
        "last_http_status": delivery.last_http_status,
        "last_error_kind": delivery.last_error_kind,
    }


class EventQueries:
    """Look up events and deliveries."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list(
        self,
        *,
        order_id: str | None,
        event_type: str | None,
        env: str | None,
        limit: int,
        before: str | None,
    ) -> list[dict[str, Any]]:
        """Return events, newest first, with their delivery status."""
        query = select(Event, Delivery).join(Delivery, Delivery.event_id == Event.id)
        if order_id:
            query = query.where(Event.order_id == order_id)
        if event_type:
            query = query.where(Event.type == event_type)
        if env:
            query = query.where(Event.env == env)
        async with self._sessions() as session:
            if before:
                anchor = await session.get(Event, before)
                if anchor is None:
                    raise NotFound(f"cursor event {before!r} not found")
                query = query.where(
                    (Event.created_at < anchor.created_at)
                    | ((Event.created_at == anchor.created_at) & (Event.id < anchor.id))
                )
            query = query.order_by(Event.created_at.desc(), Event.id.desc()).limit(
                limit
            )
            rows = (await session.execute(query)).all()
        return [
            {**json.loads(event.body), "delivery": delivery_json(delivery)}
            for event, delivery in rows
        ]

    async def get(self, event_id: str) -> dict[str, Any]:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Event, Delivery)
                    .join(Delivery, Delivery.event_id == Event.id)
                    .where(Event.id == event_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"event {event_id!r} not found", event_id=event_id)
        event, delivery = row
        return {**json.loads(event.body), "delivery": delivery_json(delivery)}

    async def deliveries(self, event_id: str) -> dict[str, Any]:
        """Return the delivery of an event with every attempt, oldest first."""
        async with self._sessions() as session:
            delivery = await session.scalar(
                select(Delivery).where(Delivery.event_id == event_id)
            )
            if delivery is None:
                raise NotFound(f"event {event_id!r} not found", event_id=event_id)
            attempts = await session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery.id)
                .order_by(DeliveryAttempt.number)
            )
            return {
                "delivery": delivery_json(delivery),
                "attempts": [attempt_json(a) for a in attempts],
            }
