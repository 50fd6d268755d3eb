"""No secret, API key or signature in a log line or an attempt record."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from aiohttp import web

from tests.conftest import RunningStack, wait_until
from tests.delivery.conftest import ENV, delivery_statuses, point_endpoint, query
from tests.delivery.receiver import Received, Receiver

SECRET = "whsec_c2VjcmV0LWtleS1ieXRlcy1mb3ItbG9ncw=="
API_KEY = "key-for-the-log-test-7f3a9c2e"


async def fail_first(request: Received) -> web.StreamResponse:
    return web.Response(status=500 if request.attempt == 1 else 200)


def test_secrets_absent_from_logs_and_tables(
    stack_factory: Callable[..., RunningStack],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logs and delivery tables hold no secret, API key or signature."""
    # As the command line's logging set-up does: SQL parameters are not
    # logged. Set first, because set_level also sets the capture's level.
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    caplog.set_level(logging.INFO)
    receiver.respond = fail_first
    stack = stack_factory(api_key=API_KEY)
    point_endpoint(stack, receiver.url())
    stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"secret": SECRET})

    stack.paid_order(env=ENV)
    stack.paid_order(env="local")  # delivered to VentraSim
    wait_until(lambda: set(delivery_statuses(stack).values()) == {"delivered"})
    event_id = receiver.posts()[0].event_id
    stack.ventra.post(f"/v1/events/{event_id}/retry")
    stack.ventra.get("/v1/orders", headers={"x-api-key": API_KEY + "-wrong"})
    wait_until(lambda: len(stack.sim_events()) == 3)

    signatures = {
        value
        for request in receiver.posts()
        for name, value in request.headers.items()
        if name in ("x-signature", "webhook-signature")
    }
    forbidden = {SECRET, SECRET.removeprefix("whsec_"), API_KEY} | signatures
    forbidden |= {value.removeprefix("v1,") for value in signatures}
    logged = caplog.text
    recorded = "\n".join(
        row[0]
        for table in ("delivery_attempts", "deliveries")
        for row in query(stack, f"SELECT t::text FROM {table} t")
    )

    assert len(receiver.posts()) == 7  # 3 failed, 3 retried, 1 manual
    assert "delivery attempt event_id=" in logged
    assert [value for value in forbidden if value in logged] == []
    assert [value for value in forbidden if value in recorded] == []
