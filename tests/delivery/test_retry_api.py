"""Manual retry of one event and bulk recovery of an environment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from tests.conftest import RunningStack, wait_until
from tests.delivery.conftest import (
    ENV,
    attempts,
    delivery_statuses,
    gone_after_two_failures,
)
from tests.delivery.receiver import Received, Receiver


async def answer_400(request: Received) -> web.StreamResponse:
    return web.Response(status=400)


async def answer_204(request: Received) -> web.StreamResponse:
    return web.Response(status=204)


async def answer_410(request: Received) -> web.StreamResponse:
    return web.Response(status=410)


def failed_event(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> tuple[RunningStack, str]:
    """Start a stack, send one event that fails its first attempt, return its id."""
    receiver.respond = answer_400
    stack = aimed()
    stack.create_order(env=ENV)
    event_id = wait_until(lambda: receiver.posts() and receiver.posts()[0].event_id)
    wait_until(lambda: attempts(stack, event_id)[0]["status"] == "failed")
    return stack, event_id


def test_manual_retry_result(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """A manual retry returns the new attempt's number, status and latency."""
    stack, event_id = failed_event(aimed, receiver)
    receiver.respond = answer_204

    response = stack.ventra.post(f"/v1/events/{event_id}/retry")
    body = response.json()
    record = next(
        a for a in attempts(stack, event_id) if a["attempt"] == body["attempt"]
    )

    assert response.status_code == 200
    assert body["outcome"] == "succeeded"
    assert body["http_status"] == 204
    assert body["latency_ms"] >= 0
    assert body["delivery_id"] == record["delivery_id"]
    assert receiver.posts(event_id)[-1].attempt == body["attempt"]
    assert record["trigger"] == "manual"
    assert record["status"] == "succeeded"
    assert delivery_statuses(stack)[event_id] == "delivered"


def test_manual_retry_gone_fails(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """A manual retry that gets 410 fails the delivery, as an automatic one does."""
    stack, event_id = failed_event(aimed, receiver)
    receiver.respond = answer_410

    response = stack.ventra.post(f"/v1/events/{event_id}/retry")

    assert response.status_code == 200
    assert response.json()["http_status"] == 410
    assert response.json()["delivery_status"] == "failed"
    assert delivery_statuses(stack)[event_id] == "failed"
    endpoint = stack.ventra.get("/v1/webhook-endpoints").json()["data"]
    assert next(e for e in endpoint if e["env"] == ENV)["enabled"] is False


def test_retry_unknown_event(stack: RunningStack) -> None:
    """Retrying an event that does not exist is 404 naming it."""
    response = stack.ventra.post("/v1/events/evt_missing/retry")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "evt_missing" in response.json()["message"]


def test_retry_disabled_endpoint(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """Retrying on a disabled endpoint is 409 saying how to enable it."""
    stack = aimed()
    stack.create_order(env=ENV)
    event_id = wait_until(lambda: receiver.posts() and receiver.posts()[0].event_id)
    stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"enabled": False})

    response = stack.ventra.post(f"/v1/events/{event_id}/retry")

    assert response.status_code == 409
    assert response.json()["error"] == "endpoint_unavailable"
    assert "disabled" in response.json()["message"]
    assert f"PUT /v1/webhook-endpoints/{ENV}" in response.json()["message"]
    assert len(receiver.posts(event_id)) == 1


def test_bulk_retry_queues_failed(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """Bulk recovery reports how many it queued and delivers them."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    stack = gone_after_two_failures(aimed, receiver)
    stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"enabled": True})
    receiver.respond = answer_204

    response = stack.ventra.post(
        "/v1/events/retry", json={"env": ENV, "since": since.isoformat()}
    )

    assert response.status_code == 200
    assert response.json()["queued"] == 3
    assert wait_until(lambda: set(delivery_statuses(stack).values()) == {"delivered"})


def test_bulk_retry_disabled_endpoint(stack: RunningStack) -> None:
    """Bulk recovery on a disabled endpoint is 409 and queues nothing."""
    stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"enabled": False})

    response = stack.ventra.post(
        "/v1/events/retry", json={"env": ENV, "since": "2026-01-01T00:00:00Z"}
    )

    assert response.status_code == 409
    assert "disabled" in response.json()["message"]
