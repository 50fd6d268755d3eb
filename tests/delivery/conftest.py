"""Fixtures of the delivery tests: a receiver and a stack pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.database import create_engine
from app.ventra.delivery import DeliveryWorker
from tests.conftest import Databases, RunningStack, wait_until
from tests.delivery.receiver import Received, Receiver, gone_for_4100

ENV = "sandbox"


@pytest.fixture
def hanging_receiver() -> Iterator[Receiver]:
    """A receiver that delays every response by 20 seconds."""

    async def respond(request: Received) -> web.StreamResponse:
        await asyncio.sleep(20)
        return web.Response(status=204)

    running = Receiver(respond).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver that responds with 200 until a test changes ``respond``."""
    running = Receiver().start()
    try:
        yield running
    finally:
        running.stop()


def point_endpoint(stack: RunningStack, url: str, env: str = ENV) -> dict[str, Any]:
    """Aim the endpoint of ``env`` at ``url`` and return it, secret included."""
    response = stack.ventra.put(f"/v1/webhook-endpoints/{env}", json={"url": url})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def aimed(
    stack_factory: Callable[..., RunningStack], receiver: Receiver
) -> Callable[..., RunningStack]:
    """Start a stack whose sandbox endpoint posts to ``receiver``."""

    def start(**changes: Any) -> RunningStack:
        stack = stack_factory(**changes)
        point_endpoint(stack, receiver.url())
        return stack

    return start


def query(stack: RunningStack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one query on the stack's Ventra database."""
    with stack.databases.ventra_conn() as conn:
        return conn.execute(sql, params).fetchall()


def delivery_statuses(stack: RunningStack, env: str = ENV) -> dict[str, str]:
    """Return the delivery status of every event of ``env``."""
    rows = query(stack, "SELECT event_id, status FROM deliveries WHERE env = %s", env)
    return dict(rows)


def attempts(stack: RunningStack, event_id: str) -> list[dict[str, Any]]:
    """Return the attempt records of one event, oldest first."""
    response = stack.ventra.get(f"/v1/events/{event_id}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()["attempts"]


def gone_after_two_failures(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> RunningStack:
    """Start a stack whose endpoint fails two events with 500, then a third with 410.

    Returns once the 410 has disabled the endpoint: the two failing events
    end cancelled and the third failed.
    """
    receiver.respond = gone_for_4100
    stack = aimed()
    stack.create_order(1000, env=ENV)
    stack.create_order(1000, env=ENV)
    wait_until(lambda: len(receiver.posts()) >= 4)  # both are waiting to retry
    stack.create_order(4100, env=ENV)
    wait_until(
        lambda: (
            sorted(delivery_statuses(stack).values())
            == ["cancelled", "cancelled", "failed"]
        )
    )
    return stack


@asynccontextmanager
async def ventra_sessions(
    databases: Databases,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Open sessions on the Ventra database for a worker run in the test."""
    engine = create_engine(databases.ventra)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def query_async(
    sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any
) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction and return its rows."""
    async with sessions() as session:
        rows = (await session.execute(text(sql), params)).all()
        await session.commit()
    return [tuple(row) for row in rows]


@asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[DeliveryWorker]:
    """Start ``worker`` and its run loop; on exit, cancel the loop and close it."""
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()
