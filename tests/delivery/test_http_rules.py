"""How the sender reads responses: 2xx, redirects, errors, 410 and Retry-After."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import RunningStack, wait_until
from tests.delivery.conftest import (
    ENV,
    attempts,
    delivery_statuses,
    gone_after_two_failures,
    point_endpoint,
)
from tests.delivery.receiver import Received, Receiver


def answer(status: int, body: bytes = b"", **headers: str) -> Any:
    async def respond(request: Received) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=200, text="landing page")
        return web.Response(status=status, body=body, headers=headers)

    return respond


def first_attempt(stack: RunningStack, event_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: next(
            (a for a in attempts(stack, event_id) if a["status"] != "in_flight"), None
        )
    )


def created_event(stack: RunningStack) -> str:
    order = stack.create_order(env=ENV)
    response = stack.ventra.get("/v1/events", params={"order_id": order["id"]})
    return response.json()["data"][0]["id"]


@pytest.mark.parametrize(
    ("status", "body"),
    [(204, b""), (202, b"queued"), (200, b'{"ok": false}')],
)
def test_2xx_is_delivered(
    aimed: Callable[..., RunningStack], receiver: Receiver, status: int, body: bytes
) -> None:
    """Any 2xx is success, whatever its body contains."""
    receiver.respond = answer(status, body, **{"Content-Type": "application/json"})
    stack = aimed()

    event_id = created_event(stack)
    attempt = first_attempt(stack, event_id)

    assert attempt["status"] == "succeeded"
    assert attempt["http_status"] == status
    assert wait_until(lambda: delivery_statuses(stack)[event_id] == "delivered")


@pytest.mark.parametrize("status", [404, 500])
def test_error_status_is_failure(
    aimed: Callable[..., RunningStack], receiver: Receiver, status: int
) -> None:
    """A 4xx or 5xx fails the attempt and records the status and body."""
    receiver.respond = answer(status, b"no such hook")
    stack = aimed()

    event_id = created_event(stack)
    attempt = first_attempt(stack, event_id)

    assert attempt["status"] == "failed"
    assert attempt["http_status"] == status
    assert attempt["error_kind"] == "http_status"
    assert attempt["response_excerpt"] == "no such hook"
    assert delivery_statuses(stack)[event_id] == "pending"


@pytest.mark.parametrize("status", [302, 307])
def test_redirect_not_followed(
    aimed: Callable[..., RunningStack], receiver: Receiver, status: int
) -> None:
    """A redirect is a failure that records Location; nothing follows it."""
    landing = receiver.url("/landing")
    receiver.respond = answer(status, Location=landing)
    stack = aimed()

    event_id = created_event(stack)
    attempt = first_attempt(stack, event_id)

    assert attempt["status"] == "failed"
    assert attempt["http_status"] == status
    assert attempt["error_kind"] == "redirect"
    assert attempt["location"] == landing
    assert [r.method for r in receiver.received()] == ["POST"]


def closed_port() -> int:
    """Return a loopback port that was just free and has no listener."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def hold(request: Received) -> web.StreamResponse:
    await asyncio.sleep(3)
    return web.Response(status=200)


async def huge_header(request: Received) -> web.StreamResponse:
    return web.Response(status=200, headers={"X-Padding": "a" * 20000})


@pytest.mark.parametrize(
    ("respond", "kind"),
    [
        (None, "connection_refused"),
        (hold, "timeout"),
        (huge_header, "response_too_large"),
    ],
)
def test_network_failure_kinds(
    stack_factory: Callable[..., RunningStack],
    receiver: Receiver,
    respond: Any,
    kind: str,
) -> None:
    """Failures without a usable status are recorded with their kind."""
    stack = stack_factory(delivery_timeout=0.5)
    if respond is None:
        point_endpoint(stack, f"http://127.0.0.1:{closed_port()}/hook")
    else:
        receiver.respond = respond
        point_endpoint(stack, receiver.url())

    event_id = created_event(stack)
    attempt = first_attempt(stack, event_id)

    assert attempt["status"] == "failed"
    assert attempt["error_kind"] == kind
    assert attempt["http_status"] is None


def test_gone_disables_endpoint(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """410 Gone disables the endpoint and cancels its pending retries."""
    stack = gone_after_two_failures(aimed, receiver)
    posts = len(receiver.posts())
    endpoints = stack.ventra.get("/v1/webhook-endpoints").json()["data"]
    sandbox = next(e for e in endpoints if e["env"] == ENV)

    assert sandbox["enabled"] is False
    assert "410" in sandbox["disabled_reason"]
    assert sorted(delivery_statuses(stack).values()) == [
        "cancelled",
        "cancelled",
        "failed",
    ]
    time.sleep(2.5)  # past the first two delays of the fast schedule
    assert len(receiver.posts()) == posts


def test_retry_after_honoured(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """503 with Retry-After delays the next attempt beyond the schedule."""
    seen: list[Received] = []

    async def respond(request: Received) -> web.StreamResponse:
        seen.append(request)
        if len(seen) == 1:
            return web.Response(status=503, headers={"Retry-After": "3"})
        return web.Response(status=200)

    receiver.respond = respond
    stack = aimed()

    event_id = created_event(stack)
    wait_until(lambda: delivery_statuses(stack)[event_id] == "delivered", timeout=10)
    first, second = receiver.posts(event_id)

    assert second.at - first.at >= 2.9
