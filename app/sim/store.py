"""Writes of the receiver: every attempt, each event once, the projection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

INSERT_ATTEMPT = text(
    """
    INSERT INTO attempts (received_at, env, known_env, headers, body, body_size,
        event_id, event_type, order_id, delivery_attempt, signature_valid,
        signature_error, standard_signature_valid, standard_signature_error,
        parse_error, mode, status_code, held_ms, outcome)
    VALUES (:received_at, :env, :known_env, CAST(:headers AS jsonb), :body,
        :body_size, :event_id, :event_type, :order_id, :delivery_attempt,
        :signature_valid, :signature_error, :standard_signature_valid,
        :standard_signature_error, :parse_error, :mode, :status_code, :held_ms,
        :outcome)
    RETURNING id
    """
)

UPSERT_EVENT = text(
    """
    INSERT INTO received_events AS r (event_id, type, env, order_id, sequence,
        payload, payload_verified, attempt_count, first_received_at,
        last_received_at, last_signature_valid)
    VALUES (:event_id, :type, :env, :order_id, :sequence, CAST(:payload AS jsonb),
        :verified, 1, :received_at, :received_at, :verified)
    ON CONFLICT (event_id) DO UPDATE SET
        attempt_count = r.attempt_count + 1,
        last_received_at = greatest(r.last_received_at, excluded.last_received_at),
        last_signature_valid = excluded.last_signature_valid,
        -- A payload seen only with a bad signature is replaced by the first
        -- validly signed copy; a verified payload is never replaced.
        payload = CASE WHEN r.payload_verified THEN r.payload
                       ELSE excluded.payload END,
        type = CASE WHEN r.payload_verified THEN r.type ELSE excluded.type END,
        order_id = CASE WHEN r.payload_verified THEN r.order_id
                        ELSE excluded.order_id END,
        sequence = CASE WHEN r.payload_verified THEN r.sequence
                        ELSE excluded.sequence END,
        payload_verified = r.payload_verified OR excluded.payload_verified
    RETURNING (xmax = 0) AS inserted
    """
)

# An older event never moves an order backwards: the update applies only
# when the incoming sequence is higher than the one stored.
UPSERT_ORDER = text(
    """
    INSERT INTO merchant_orders AS o (order_id, env, status, amount, held_amount,
        released_amount, refunded_amount, sequence, last_event_id,
        last_event_type, snapshot, updated_at)
    VALUES (:order_id, :env, :status, :amount, :held_amount, :released_amount,
        :refunded_amount, :sequence, :event_id, :event_type,
        CAST(:snapshot AS jsonb), :now)
    ON CONFLICT (order_id) DO UPDATE SET
        status = excluded.status, amount = excluded.amount,
        held_amount = excluded.held_amount,
        released_amount = excluded.released_amount,
        refunded_amount = excluded.refunded_amount,
        sequence = excluded.sequence, last_event_id = excluded.last_event_id,
        last_event_type = excluded.last_event_type,
        snapshot = excluded.snapshot, updated_at = excluded.updated_at
    WHERE o.sequence < excluded.sequence
    """
)


@dataclass
class ParsedEvent:
    """The fields of a Ventra event envelope that the receiver reads."""

    event_id: str
    type: str
    env: str
    order_id: str | None
    sequence: int | None
    payload: dict[str, Any]
    payload_json: str


@dataclass
class AttemptRecord:
    """Everything stored about one request."""

    received_at: datetime
    env: str
    known_env: bool
    headers_json: str
    body: bytes
    event: ParsedEvent | None
    delivery_attempt: int | None
    signature_valid: bool
    signature_error: str | None
    standard_signature_valid: bool | None
    standard_signature_error: str | None
    parse_error: str | None
    mode: str
    status_code: int | None
    held_ms: int
    outcome: str
    apply_to_view: bool


class ReceiverStore:
    """Persist attempts in one transaction each."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def save(self, record: AttemptRecord) -> tuple[int, bool]:
        """Store the attempt; return its id and whether the event is new."""
        event = record.event
        async with self._sessions() as session:
            attempt_id = await session.scalar(
                INSERT_ATTEMPT,
                {
                    "received_at": record.received_at,
                    "env": record.env,
                    "known_env": record.known_env,
                    "headers": record.headers_json,
                    "body": record.body,
                    "body_size": len(record.body),
                    "event_id": event.event_id if event else None,
                    "event_type": event.type if event else None,
                    "order_id": event.order_id if event else None,
                    "delivery_attempt": record.delivery_attempt,
                    "signature_valid": record.signature_valid,
                    "signature_error": record.signature_error,
                    "standard_signature_valid": record.standard_signature_valid,
                    "standard_signature_error": record.standard_signature_error,
                    "parse_error": record.parse_error,
                    "mode": record.mode,
                    "status_code": record.status_code,
                    "held_ms": record.held_ms,
                    "outcome": record.outcome,
                },
            )
            is_new = False
            if event is not None and record.known_env:
                is_new = bool(
                    await session.scalar(
                        UPSERT_EVENT,
                        {
                            "event_id": event.event_id,
                            "type": event.type,
                            "env": record.env,
                            "order_id": event.order_id,
                            "sequence": event.sequence,
                            "payload": event.payload_json,
                            "verified": record.signature_valid,
                            "received_at": record.received_at,
                        },
                    )
                )
                if record.apply_to_view:
                    await self._project(session, event, record.received_at)
            await session.commit()
        assert attempt_id is not None
        return int(attempt_id), is_new

    async def _project(
        self, session: AsyncSession, event: ParsedEvent, now: datetime
    ) -> None:
        data = event.payload.get("data")
        if not isinstance(data, dict) or event.order_id is None or event.sequence is None:
            return
        amounts = {}
        for name in ("amount", "held_amount", "released_amount", "refunded_amount"):
            value = data.get(name)
            amounts[name] = value if isinstance(value, int) and not isinstance(value, bool) else 0
        status = data.get("status")
        await session.execute(
            UPSERT_ORDER,
            {
                "order_id": event.order_id,
                "env": event.env,
                "status": status if isinstance(status, str) else "unknown",
                **amounts,
                "sequence": event.sequence,
                "event_id": event.event_id,
                "event_type": event.type,
                "snapshot": event.payload_json,
                "now": now,
            },
        )
