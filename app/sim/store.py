"""Writes of the receiver: every attempt, each event once, the projection.

Each request is stored by one SQL statement, run in autocommit: its parts
(the attempt, the event upsert, the order upsert) commit together or not at
all, in one round trip to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from app.sim.envelope import ParsedEvent, order_amounts

# Concurrent writes when the engine's pool has no fixed size.
DEFAULT_WRITE_SLOTS = 10

ATTEMPT_CTE = """
    attempt AS (
        INSERT INTO attempts (received_at, method, env, known_env, headers, body,
            body_size, event_id, event_type, order_id, delivery_attempt,
            signature_valid, signature_error, standard_signature_valid,
            standard_signature_error, parse_error, mode, mode_options,
            status_code, held_ms, outcome)
        VALUES (%(received_at)s, %(method)s, %(env)s, %(known_env)s,
            CAST(%(headers)s AS json), %(body)s, %(body_size)s, %(event_id)s,
            %(event_type)s, %(order_id)s, %(delivery_attempt)s,
            %(signature_valid)s, %(signature_error)s,
            %(standard_signature_valid)s, %(standard_signature_error)s,
            %(parse_error)s, %(mode)s, CAST(%(mode_options)s AS json),
            %(status_code)s, %(held_ms)s, %(outcome)s)
        RETURNING id
    )
"""

# A payload seen only with a bad signature is replaced by the first validly
# signed copy; a verified payload is never replaced.
EVENT_CTE = """
    event AS (
        INSERT INTO received_events AS r (event_id, type, env, order_id, sequence,
            payload, payload_verified, attempt_count, first_received_at,
            last_received_at, last_signature_valid)
        SELECT %(event_id)s, %(event_type)s, %(env)s, %(order_id)s, %(sequence)s,
            input.payload, %(signature_valid)s, 1, %(received_at)s,
            %(received_at)s, %(signature_valid)s
          FROM input
        ON CONFLICT (event_id) DO UPDATE SET
            attempt_count = r.attempt_count + 1,
            last_received_at = greatest(r.last_received_at, excluded.last_received_at),
            last_signature_valid = excluded.last_signature_valid,
            payload = CASE WHEN r.payload_verified THEN r.payload
                           ELSE excluded.payload END,
            type = CASE WHEN r.payload_verified THEN r.type ELSE excluded.type END,
            order_id = CASE WHEN r.payload_verified THEN r.order_id
                            ELSE excluded.order_id END,
            sequence = CASE WHEN r.payload_verified THEN r.sequence
                            ELSE excluded.sequence END,
            payload_verified = r.payload_verified OR excluded.payload_verified
        RETURNING (xmax = 0) AS inserted
    )
"""

# An older event never moves an order backwards: the update applies only
# when the incoming sequence is higher than the one stored.
ORDER_CTE = """
    projected AS (
        INSERT INTO merchant_orders AS o (order_id, env, status, amount,
            held_amount, released_amount, refunded_amount, sequence,
            last_event_id, last_event_type, snapshot, first_seen_at, updated_at)
        SELECT %(order_id)s, %(env)s, %(status)s, %(amount)s, %(held_amount)s,
            %(released_amount)s, %(refunded_amount)s, %(sequence)s, %(event_id)s,
            %(event_type)s, input.payload -> 'data', %(received_at)s,
            %(received_at)s
          FROM input
        ON CONFLICT (order_id) DO UPDATE SET
            env = excluded.env, status = excluded.status, amount = excluded.amount,
            held_amount = excluded.held_amount,
            released_amount = excluded.released_amount,
            refunded_amount = excluded.refunded_amount,
            sequence = excluded.sequence, last_event_id = excluded.last_event_id,
            last_event_type = excluded.last_event_type,
            snapshot = excluded.snapshot, updated_at = excluded.updated_at
        WHERE o.sequence < excluded.sequence
        RETURNING 1
    )
"""

# The payload is parsed into jsonb once, for both the event and the order.
INPUT_CTE = "input AS (SELECT CAST(%(payload)s AS jsonb) AS payload)"

# psycopg's named placeholders; bytes, because the text is not a literal.
SAVE_ATTEMPT = f"WITH {ATTEMPT_CTE} SELECT id, false FROM attempt".encode()
SAVE_EVENT = (
    f"WITH {ATTEMPT_CTE}, {INPUT_CTE}, {EVENT_CTE}"
    " SELECT (SELECT id FROM attempt), (SELECT inserted FROM event)"
).encode()
SAVE_AND_PROJECT = (
    f"WITH {ATTEMPT_CTE}, {INPUT_CTE}, {EVENT_CTE}, {ORDER_CTE}"
    " SELECT (SELECT id FROM attempt), (SELECT inserted FROM event)"
).encode()


@dataclass
class AttemptRecord:
    """Everything stored about one request."""

    received_at: datetime
    method: str
    env: str
    known_env: bool
    headers_json: str
    body: bytes
    body_size: int
    event: ParsedEvent | None
    delivery_attempt: int | None
    signature_valid: bool
    signature_error: str | None
    standard_signature_valid: bool | None
    standard_signature_error: str | None
    parse_error: str | None
    mode: str
    mode_options: dict[str, Any]
    status_code: int | None
    held_ms: int
    outcome: str
    apply_to_view: bool


class ReceiverStore:
    """Persist each attempt, with its event and projection, atomically."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Past the pool's size, SQLAlchemy opens overflow connections and closes
        # them on return. Under a burst that churn costs more than the writes,
        # so writes wait here for a pooled connection instead.
        pool = engine.pool
        size = pool.size() if isinstance(pool, QueuePool) else DEFAULT_WRITE_SLOTS
        self._slots = asyncio.Semaphore(max(1, size))

    async def save(self, record: AttemptRecord) -> tuple[int, bool]:
        """Store the attempt; return its id and whether its event is new."""
        event = record.event
        params: dict[str, Any] = {
            "received_at": record.received_at,
            "method": record.method,
            "env": record.env,
            "known_env": record.known_env,
            "headers": record.headers_json,
            "body": record.body,
            "body_size": record.body_size,
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
            "mode_options": json.dumps(record.mode_options),
            "status_code": record.status_code,
            "held_ms": record.held_ms,
            "outcome": record.outcome,
        }
        statement = SAVE_ATTEMPT
        # Events sent to an unknown environment are kept as attempts only.
        if event is not None and record.known_env:
            statement = SAVE_EVENT
            params["sequence"] = event.sequence
            params["payload"] = event.payload_json
            projection = _projection(event) if record.apply_to_view else None
            if projection is not None:
                statement = SAVE_AND_PROJECT
                params.update(projection)

        async with self._slots, self._engine.connect() as connection:
            # The statement goes to psycopg directly: SQLAlchemy's handling of
            # its thirty parameters costs more CPU than the rest of a request.
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, psycopg.AsyncConnection)
            cursor = await driver.execute(statement, params)
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), bool(row[1])


def _projection(event: ParsedEvent) -> dict[str, Any] | None:
    """Return the order columns an event sets, or None if it names no order."""
    data = event.payload.get("data")
    if not isinstance(data, dict) or event.order_id is None or event.sequence is None:
        return None
    status = data.get("status")
    return {
        "status": status if isinstance(status, str) else "unknown",
        **order_amounts(data),
    }
