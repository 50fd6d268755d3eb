"""Claiming ahead: the worker claims more deliveries than it has senders.

A claimed attempt that has waited longer than the start window goes back
to the queue unsent: no attempt row, the same attempt number next time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.database import create_engine
from app.core.signatures import generate_secret, verify_hex
from app.ventra.attempts import SHUTDOWN_GRACE, Claim
from app.ventra.delivery import DeliveryConfig, DeliveryWorker
from app.ventra.endpoints import EndpointService
from app.ventra.orders import OrderPolicy, OrderService
from tests.conftest import Databases
from tests.delivery.conftest import ENV, query_async, running, ventra_sessions
from tests.delivery.receiver import Received, Receiver

EVENTS = 150
# The POST that stalls; the attempts claimed behind it wait in the queue.
STALLED_POST = 45
STALL_SECONDS = 1.0
START_WINDOW = 0.3


@pytest.fixture
def stalling_receiver() -> Iterator[Receiver]:
    """A receiver that returns 204 at once, except for one slow POST."""
    receiver = Receiver()

    async def respond(request: Received) -> web.StreamResponse:
        if len(receiver.posts()) == STALLED_POST:
            await asyncio.sleep(STALL_SECONDS)
        return web.Response(status=204)

    receiver.respond = respond
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


async def outstanding(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(
            text(
                "SELECT count(*) FROM deliveries"
                " WHERE status IN ('pending', 'in_flight')"
            )
        )


async def disable_endpoint(
    sessions: async_sessionmaker[AsyncSession], worker: DeliveryWorker
) -> None:
    """Disable the endpoint as the API handler does, and notify the worker."""
    await EndpointService(sessions).update(ENV, enabled=False)
    worker.endpoint_changed(ENV)


async def run_worker(
    databases: Databases,
    url: str,
    start_window: float,
    stop_when_stalled: bool,
    when_stalled: Callable[..., Awaitable[None]] | None = None,
) -> None:
    """Store the events and run one worker with one sender.

    It runs until no delivery is pending or in flight, or with
    ``stop_when_stalled`` until the stalled POST has arrived. Once that POST
    has arrived it awaits ``when_stalled(sessions, worker)``.
    """
    async with ventra_sessions(databases) as sessions:
        await EndpointService(sessions).ensure_defaults(url, None)
        orders = OrderService(sessions, OrderPolicy())
        for _ in range(EVENTS):
            await orders.create(amount=1000, description=None, env=ENV, expires_in=3600)
        worker = DeliveryWorker(
            sessions,
            DeliveryConfig(concurrency=1, timeout=5.0, start_window=start_window),
        )
        async with running(worker), asyncio.timeout(60):
            while await outstanding(sessions):
                if await stalled(sessions):
                    if stop_when_stalled:
                        break
                    if when_stalled is not None:
                        await when_stalled(sessions, worker)
                        when_stalled = None
                await asyncio.sleep(0.05)


async def stalled(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Tell whether the stalled POST has started: its attempt is in flight."""
    async with sessions() as session:
        recorded = await session.scalar(
            text("SELECT count(*) FROM delivery_attempts WHERE status = 'succeeded'")
        )
    return recorded >= STALLED_POST - 1


def handed_back_counts(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Return the count of each "handed back unsent" log line."""
    prefix = "delivery attempts handed back unsent count="
    return [
        int(r.getMessage().removeprefix(prefix))
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]


def test_late_claims_go_back_unsent(
    databases: Databases,
    stalling_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ventra.delivery")

    asyncio.run(run_worker(databases, stalling_receiver.url(), START_WINDOW, False))

    assert handed_back_counts(caplog), "no claimed attempt outlived the start window"
    posts = stalling_receiver.posts()
    assert len(posts) == EVENTS
    assert len({p.event_id for p in posts}) == EVENTS
    assert {p.attempt for p in posts} == {1}
    with databases.ventra_conn() as conn:
        attempts = conn.execute(
            "SELECT number, status, count(*) FROM delivery_attempts"
            " GROUP BY number, status"
        ).fetchall()
        deliveries = conn.execute(
            "SELECT status, attempt_count, count(*) FROM deliveries"
            " GROUP BY status, attempt_count"
        ).fetchall()
    assert attempts == [(1, "succeeded", EVENTS)]
    assert deliveries == [("delivered", 1, EVENTS)]


def test_close_hands_back_unsent_claims(
    databases: Databases,
    stalling_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ventra.delivery")
    # A long start window: the claims behind the stalled POST are still
    # valid when the worker closes, so only the close hands them back.
    asyncio.run(run_worker(databases, stalling_receiver.url(), 30.0, True))

    handed_back = handed_back_counts(caplog)
    assert sum(handed_back) >= 1, "the worker held no claim when it closed"
    posts = stalling_receiver.posts()
    sent = {p.event_id for p in posts}
    assert len(posts) == STALLED_POST
    assert len(sent) == STALLED_POST
    with databases.ventra_conn() as conn:
        deliveries = conn.execute(
            "SELECT event_id, status, attempt_count, lease_until FROM deliveries"
        ).fetchall()
        attempts = conn.execute(
            "SELECT event_id, status FROM delivery_attempts"
        ).fetchall()
    delivered = {row[0] for row in deliveries if row[1] == "delivered"}
    waiting = [row for row in deliveries if row[0] not in sent]
    assert delivered == sent
    assert len(waiting) == EVENTS - STALLED_POST
    assert {(row[1], row[2], row[3]) for row in waiting} == {("pending", 0, None)}
    assert sorted(attempts) == sorted((event_id, "succeeded") for event_id in sent)


def test_disabled_endpoint_drops_queued_claims(
    databases: Databases,
    stalling_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ventra.delivery")

    asyncio.run(
        run_worker(databases, stalling_receiver.url(), 30.0, False, disable_endpoint)
    )

    assert sum(handed_back_counts(caplog)) >= 1, "no claim was queued"
    sent = {p.event_id for p in stalling_receiver.posts()}
    assert len(stalling_receiver.posts()) == STALLED_POST
    with databases.ventra_conn() as conn:
        deliveries = conn.execute(
            "SELECT event_id, status, attempt_count FROM deliveries"
        ).fetchall()
        attempts = conn.execute("SELECT event_id FROM delivery_attempts").fetchall()
    waiting = {(row[1], row[2]) for row in deliveries if row[0] not in sent}
    assert waiting == {("cancelled", 0)}
    assert sorted(row[0] for row in attempts) == sorted(sent)


async def close_while_hanging(databases: Databases, receiver: Receiver) -> float:
    """Start one POST that hangs, close the worker, return how long closing took."""
    engine = create_engine(databases.ventra)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        await EndpointService(sessions).ensure_defaults(receiver.url(), None)
        await OrderService(sessions, OrderPolicy()).create(
            amount=1000, description=None, env=ENV, expires_in=3600
        )
        worker = DeliveryWorker(sessions, DeliveryConfig(concurrency=1, timeout=30.0))
        await worker.start()
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(30):
            while not receiver.posts():
                await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        started = time.monotonic()
        await worker.close()
        return time.monotonic() - started
    finally:
        await engine.dispose()


def test_close_cuts_off_hanging_post(
    databases: Databases,
    hanging_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ventra.delivery")

    seconds = asyncio.run(close_while_hanging(databases, hanging_receiver))

    assert seconds < SHUTDOWN_GRACE + 3
    assert any("cut off by shutdown count=1" in r.getMessage() for r in caplog.records)
    with databases.ventra_conn() as conn:
        delivery = conn.execute("SELECT status FROM deliveries").fetchall()
        attempt = conn.execute("SELECT status FROM delivery_attempts").fetchall()
    # Left for lease recovery, which records the attempt as interrupted.
    assert delivery == [("in_flight",)]
    assert attempt == [("in_flight",)]


OLD_SECRET = generate_secret()
NEW_SECRET = generate_secret()
CHANGED_EVENTS = 5


class SecretChangedDuringClaim(DeliveryWorker):
    """A worker whose first claim ends while a change of the secret is under way.

    The claim has read and signed with the old secret, and the change has
    committed but not returned, as with a ``PUT /v1/webhook-endpoints``
    that runs beside a claim.
    """

    change: asyncio.Task[None] | None = None

    async def _claim(self, env: str, limit: int) -> list[Claim]:
        claims = await super()._claim(env, limit)
        if claims and self.change is None:
            committed = asyncio.Event()
            self.change = asyncio.create_task(self._change_secret(committed))
            await committed.wait()
        return claims

    async def _change_secret(self, committed: asyncio.Event) -> None:
        async with self.endpoint_change(ENV):
            await EndpointService(self._sessions).update(ENV, secret=NEW_SECRET)
            committed.set()
            # The change has not returned yet when the claim ends.
            await asyncio.sleep(0.5)


async def deliver_across_secret_change(databases: Databases, url: str) -> None:
    async with ventra_sessions(databases) as sessions:
        await EndpointService(sessions).ensure_defaults(url, OLD_SECRET)
        orders = OrderService(sessions, OrderPolicy())
        for _ in range(CHANGED_EVENTS):
            await orders.create(amount=1000, description=None, env=ENV, expires_in=3600)
        worker = SecretChangedDuringClaim(sessions, DeliveryConfig(concurrency=2))
        async with running(worker), asyncio.timeout(30):
            while await outstanding(sessions):
                await asyncio.sleep(0.05)
            assert worker.change is not None
            await worker.change


def test_claim_during_secret_change_goes_back(
    databases: Databases, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ventra.delivery")

    asyncio.run(deliver_across_secret_change(databases, receiver.url()))

    posts = receiver.posts()
    assert sum(handed_back_counts(caplog)) >= 1
    assert len({p.event_id for p in posts}) == CHANGED_EVENTS
    assert len(posts) == CHANGED_EVENTS
    for post in posts:
        assert verify_hex(NEW_SECRET, post.body, post.headers.get("x-signature"))
        assert post.attempt == 1


async def retry_behind_row_lock(databases: Databases, url: str) -> dict[str, Any]:
    """Send a manual retry that waits for a row lock while the secret changes."""
    async with ventra_sessions(databases) as sessions:
        await EndpointService(sessions).ensure_defaults(url, OLD_SECRET)
        await OrderService(sessions, OrderPolicy()).create(
            amount=1000, description=None, env=ENV, expires_in=3600
        )
        # No automatic attempt: the manual one is the only POST.
        [(event_id,)] = await query_async(
            sessions,
            "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour'"
            " RETURNING event_id",
        )
        worker = DeliveryWorker(sessions, DeliveryConfig(concurrency=1))
        async with running(worker), sessions() as blocker:
            await blocker.execute(text("SELECT 1 FROM deliveries FOR UPDATE"))
            retry = asyncio.create_task(worker.retry_now(event_id))
            async with asyncio.timeout(10):
                while not await lock_waits(sessions):
                    await asyncio.sleep(0.02)
            await EndpointService(sessions).update(ENV, secret=NEW_SECRET)
            await blocker.commit()
            return await retry


async def lock_waits(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Return how many sessions of this database wait for a lock."""
    [(count,)] = await query_async(
        sessions,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    return count


def test_retry_reads_endpoint_after_lock(
    databases: Databases, receiver: Receiver
) -> None:
    """A manual retry that waited for a row lock signs with the secret of that time."""
    result = asyncio.run(retry_behind_row_lock(databases, receiver.url()))

    assert result["outcome"] == "succeeded"
    [post] = receiver.posts()
    assert verify_hex(NEW_SECRET, post.body, post.headers.get("x-signature"))
