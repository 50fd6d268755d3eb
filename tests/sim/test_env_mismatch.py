"""The receiver rejects an event sent to another environment's endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from tests.conftest import RunningStack


def test_event_for_other_env_rejected(stack: RunningStack) -> None:
    """A local event signed with sandbox's secret and sent there is 400."""
    endpoints = {e["env"]: e for e in stack.sim.get("/api/endpoints").json()["data"]}
    secret = endpoints["sandbox"]["secret"]
    body = json.dumps(
        {
            "id": "evt_mismatch",
            "type": "charge.paid",
            "env": "local",
            "order_id": "ord_mismatch",
            "sequence": 1,
            "data": {"status": "held", "amount": 100},
        }
    ).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    response = httpx.post(
        f"{stack.info.sim_url}/api/webhooks/ventra/sandbox",
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "env_mismatch"
    assert stack.sim.get("/api/orders/ord_mismatch").status_code == 404


def test_connection_rejects_unusable_values(stack: RunningStack) -> None:
    """A base URL without a host or a key with a newline is 422."""
    no_host = stack.sim.put("/api/connection", json={"base_url": "http://"})
    newline = stack.sim.put("/api/connection", json={"api_key": "a\nb"})

    assert no_host.status_code == 422
    assert newline.status_code == 422
