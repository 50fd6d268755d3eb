"""Environments do not wait for each other: each has its own senders.

An endpoint that keeps every request open delays only its own
environment's webhooks, also when manual retries pile up on it.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ventra.attempts import MANUAL_RETRIES
from app.ventra.delivery import DeliveryConfig, DeliveryWorker
from app.ventra.endpoints import EndpointService
from app.ventra.errors import DeliveryUnavailable
from app.ventra.orders import OrderPolicy, OrderService
from tests.conftest import Databases
from tests.delivery.conftest import ENV, query_async, running, ventra_sessions
from tests.delivery.receiver import Receiver

HANGING_ENV = "staging"
CONCURRENCY = 2
# More events than senders, so the hanging environment keeps a backlog.
HANGING_EVENTS = 3 * CONCURRENCY
HEALTHY_EVENTS = 5
TIMEOUT = 10.0


async def aim_endpoints(
    sessions: async_sessionmaker[AsyncSession], healthy: Receiver, hanging: Receiver
) -> None:
    """Aim every endpoint at ``healthy``, except HANGING_ENV's at ``hanging``."""
    endpoints = EndpointService(sessions)
    await endpoints.ensure_defaults(healthy.url(), None)
    await endpoints.update(HANGING_ENV, url=hanging.url())


async def create_orders(
    sessions: async_sessionmaker[AsyncSession], env: str, count: int
) -> None:
    """Create ``count`` orders in ``env``, each with its charge.created event."""
    orders = OrderService(sessions, OrderPolicy())
    for _ in range(count):
        await orders.create(amount=1000, description=None, env=env, expires_in=3600)


async def deliver_beside_hanging(
    databases: Databases, healthy: Receiver, hanging: Receiver
) -> float:
    """Return the seconds the healthy environment's events took to arrive.

    They are created once every sender of the hanging environment waits
    on a POST that gets no response within the delivery timeout.
    """
    async with ventra_sessions(databases) as sessions:
        await aim_endpoints(sessions, healthy, hanging)
        await create_orders(sessions, HANGING_ENV, HANGING_EVENTS)
        worker = DeliveryWorker(
            sessions, DeliveryConfig(concurrency=CONCURRENCY, timeout=TIMEOUT)
        )
        async with running(worker):
            async with asyncio.timeout(30):
                while len(hanging.posts()) < CONCURRENCY:
                    await asyncio.sleep(0.02)
            started = time.monotonic()
            await create_orders(sessions, ENV, HEALTHY_EVENTS)
            async with asyncio.timeout(3 * TIMEOUT):
                while len(healthy.posts()) < HEALTHY_EVENTS:
                    await asyncio.sleep(0.02)
            return time.monotonic() - started


def test_hanging_endpoint_holds_only_its_environment(
    databases: Databases, receiver: Receiver, hanging_receiver: Receiver
) -> None:
    seconds = asyncio.run(deliver_beside_hanging(databases, receiver, hanging_receiver))

    # Sharing senders, the healthy events would wait for the timeout.
    assert seconds < TIMEOUT / 2
    assert len(hanging_receiver.posts()) == CONCURRENCY
    with databases.ventra_conn() as conn:
        rows = conn.execute(
            "SELECT d.env, d.status, a.status FROM deliveries d"
            " JOIN events e ON e.id = d.event_id"
            " LEFT JOIN delivery_attempts a ON a.delivery_id = d.id"
        ).fetchall()
    healthy = [row for row in rows if row[0] == ENV]
    assert healthy == [(ENV, "delivered", "succeeded")] * HEALTHY_EVENTS
    # The two cut-off POSTs are left for lease recovery; the rest never left.
    hanging = sorted(row[1:] for row in rows if row[0] == HANGING_ENV)
    assert hanging == sorted(
        [("in_flight", "in_flight")] * CONCURRENCY
        + [("pending", None)] * (HANGING_EVENTS - CONCURRENCY)
    )


# Manual retries sent at once to the hanging endpoint, more than allowed.
RETRIES = MANUAL_RETRIES + 4
RETRY_TIMEOUT = 3.0


async def retry_beside_hanging(
    databases: Databases, healthy: Receiver, hanging: Receiver
) -> tuple[float, list[BaseException | dict]]:
    """Return how long the healthy events took, and each manual retry's result.

    The manual retries go to events of the hanging environment whose
    automatic attempts are an hour away.
    """
    async with ventra_sessions(databases) as sessions:
        await aim_endpoints(sessions, healthy, hanging)
        await create_orders(sessions, HANGING_ENV, RETRIES)
        event_ids = await query_async(
            sessions,
            "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour'"
            " WHERE env = :env RETURNING event_id",
            env=HANGING_ENV,
        )
        worker = DeliveryWorker(
            sessions, DeliveryConfig(concurrency=CONCURRENCY, timeout=RETRY_TIMEOUT)
        )
        async with running(worker):
            retries = asyncio.gather(
                *(worker.retry_now(event_id) for (event_id,) in event_ids),
                return_exceptions=True,
            )
            async with asyncio.timeout(30):
                while len(hanging.posts()) < MANUAL_RETRIES:
                    await asyncio.sleep(0.02)
            started = time.monotonic()
            await create_orders(sessions, ENV, HEALTHY_EVENTS)
            async with asyncio.timeout(30):
                while len(healthy.posts()) < HEALTHY_EVENTS:
                    await asyncio.sleep(0.02)
            seconds = time.monotonic() - started
            return seconds, await retries


def test_manual_retries_hold_only_their_environment(
    databases: Databases, receiver: Receiver, hanging_receiver: Receiver
) -> None:
    seconds, results = asyncio.run(
        retry_beside_hanging(databases, receiver, hanging_receiver)
    )

    assert seconds < RETRY_TIMEOUT / 2
    rejected = [r for r in results if isinstance(r, DeliveryUnavailable)]
    sent = [r for r in results if isinstance(r, dict)]
    assert len(rejected) == RETRIES - MANUAL_RETRIES
    assert {(r.status, r.code) for r in rejected} == {(429, "too_many_retries")}
    assert len(sent) == MANUAL_RETRIES
    assert {(r["outcome"], r["error_kind"]) for r in sent} == {("failed", "timeout")}
    assert len(hanging_receiver.posts()) == MANUAL_RETRIES


async def rejected_retries(databases: Databases, receiver: Receiver) -> list[object]:
    """Send retries that fail before any POST, more than the slots, all at once.

    Half name unknown events; half name events whose endpoint is disabled.
    """
    async with ventra_sessions(databases) as sessions:
        endpoints = EndpointService(sessions)
        await endpoints.ensure_defaults(receiver.url(), None)
        await create_orders(sessions, HANGING_ENV, RETRIES)
        await endpoints.update(HANGING_ENV, enabled=False)
        event_ids = await query_async(
            sessions,
            "SELECT event_id FROM deliveries WHERE env = :env",
            env=HANGING_ENV,
        )
        worker = DeliveryWorker(sessions, DeliveryConfig(concurrency=CONCURRENCY))
        async with running(worker):
            unknown = [f"evt_unknown{n}" for n in range(RETRIES)]
            disabled = [event_id for (event_id,) in event_ids]
            return await asyncio.gather(
                *(worker.retry_now(event_id) for event_id in unknown + disabled),
                return_exceptions=True,
            )


def test_rejected_retries_take_no_slot(
    databases: Databases, receiver: Receiver
) -> None:
    results = asyncio.run(rejected_retries(databases, receiver))

    codes = [getattr(r, "code", None) for r in results]
    assert codes[:RETRIES] == ["not_found"] * RETRIES
    assert codes[RETRIES:] == ["endpoint_unavailable"] * RETRIES
    assert receiver.posts() == []
