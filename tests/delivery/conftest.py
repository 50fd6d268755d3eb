"""Fixtures of the delivery tests: a receiver and a stack pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import RunningStack, wait_until
from tests.delivery.receiver import Receiver, gone_for_4100

ENV = "sandbox"


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
