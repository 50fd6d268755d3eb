"""Signed headers: Standard Webhooks, X-Signature, fresh on every attempt."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.signatures import fingerprint
from tests.conftest import RunningStack, wait_until
from tests.delivery.conftest import ENV, attempts, delivery_statuses
from tests.delivery.receiver import Received, Receiver


def sandbox_secret(stack: RunningStack) -> str:
    endpoints = stack.ventra.get("/v1/webhook-endpoints").json()["data"]
    return next(e["secret"] for e in endpoints if e["env"] == ENV)


def x_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def only_event(stack: RunningStack, receiver: Receiver) -> str:
    stack.create_order(env=ENV)
    return wait_until(lambda: receiver.posts() and receiver.posts()[0].event_id)


@pytest.mark.parametrize(
    "configured", [None, "plain-secret-ção"], ids=["generated_whsec", "plain_utf8"]
)
def test_first_attempt_verifies(
    aimed: Callable[..., RunningStack], receiver: Receiver, configured: str | None
) -> None:
    """Both schemes verify over the exact bytes received, with either secret form.

    A secret without the whsec_ form keys both schemes with its UTF-8 bytes.
    """
    stack = aimed()
    if configured is not None:
        stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"secret": configured})
    secret = sandbox_secret(stack)
    # standardwebhooks (1.3) base64-decodes a str key, so a plain secret goes in
    # as its UTF-8 bytes.
    standard_key = secret if configured is None else secret.encode("utf-8")

    event_id = only_event(stack, receiver)
    request = receiver.posts(event_id)[0]
    payload = Webhook(standard_key).verify(request.body, request.headers)

    assert payload["id"] == event_id
    assert request.headers["webhook-id"] == event_id
    assert request.headers["x-ventra-event-id"] == event_id
    assert request.headers["x-signature"] == x_signature(secret, request.body)


def test_retries_resign_same_body(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """Each attempt has a new timestamp and signature over identical bytes."""

    async def fail_twice(request: Received) -> web.StreamResponse:
        return web.Response(status=500 if request.attempt < 3 else 200)

    receiver.respond = fail_twice
    stack = aimed()
    secret = sandbox_secret(stack)

    event_id = only_event(stack, receiver)
    wait_until(lambda: delivery_statuses(stack)[event_id] == "delivered")
    first, _, third = receiver.posts(event_id)

    assert first.body == third.body
    assert [first.attempt, third.attempt] == [1, 3]
    assert int(third.headers["webhook-timestamp"]) > int(
        first.headers["webhook-timestamp"]
    )
    assert third.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert Webhook(secret).verify(third.body, third.headers)
    assert third.headers["x-signature"] == x_signature(secret, third.body)


def test_manual_retry_uses_new_secret(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """After the secret changes, a manual retry is signed with the new one."""
    stack = aimed()
    old = sandbox_secret(stack)
    event_id = only_event(stack, receiver)
    wait_until(lambda: delivery_statuses(stack)[event_id] == "delivered")
    new = "whsec_" + "bmV3LXNlY3JldC1mb3ItdGVzdHMtMDEyMzQ1"

    changed = stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"secret": new})
    result = stack.ventra.post(f"/v1/events/{event_id}/retry")
    request = receiver.posts(event_id)[-1]

    assert changed.status_code == 200
    assert result.status_code == 200
    assert result.json()["attempt"] == 2
    assert request.attempt == 2
    assert Webhook(new).verify(request.body, request.headers)
    assert request.headers["x-signature"] == x_signature(new, request.body)
    try:
        Webhook(old).verify(request.body, request.headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("the retry still verifies with the old secret")
    assert attempts(stack, event_id)[-1]["endpoint"]["secret_fingerprint"] == (
        fingerprint(new)
    )
