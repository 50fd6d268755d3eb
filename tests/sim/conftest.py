"""Fixtures for VentraSim tests: a receiver on its own, and signed posts.

Signatures are computed here with hmac and hashlib, apart from the app's
own signing code, so a bug there cannot hide in both sides of a test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack

SECRETS = {
    "local": "whsec_dGVzdC1zZWNyZXQtbG9jYWwtMDEyMzQ1Njc4",
    "sandbox": "whsec_dGVzdC1zZWNyZXQtc2FuZGJveC0wMTIzNDU2",
    "staging": "plain-staging-secret",
}


def sign(secret: str, body: bytes) -> str:
    """Return the X-Signature of ``body``: lowercase hex HMAC-SHA256."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def make_event(
    order_id: str,
    sequence: int,
    event_type: str = "charge.created",
    status: str = "pending_payment",
    env: str = "local",
    amount: int = 1999,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Build an event envelope shaped like Ventra's."""
    held = amount if status == "held" else 0
    return {
        "id": event_id or f"evt_{order_id}_{sequence}",
        "type": event_type,
        "created_at": "2026-01-01T00:00:00.000Z",
        "env": env,
        "order_id": order_id,
        "sequence": sequence,
        "data": {
            "id": order_id,
            "env": env,
            "status": status,
            "amount": amount,
            "held_amount": held,
            "released_amount": amount if status == "released" else 0,
            "refunded_amount": amount if status == "refunded" else 0,
        },
    }


def encode(event: dict[str, Any]) -> bytes:
    """Serialize an event the way Ventra does."""
    return json.dumps(event, separators=(",", ":")).encode("utf-8")


@dataclass
class Sim:
    """A VentraSim running without Ventra, with helpers to post to it."""

    running: RunningStack
    http: httpx.Client

    @property
    def api(self) -> httpx.Client:
        """The management API client, with the bearer token."""
        return self.running.sim

    def secret(self, env: str) -> str:
        """Read an environment's secret from GET /api/endpoints."""
        response = self.api.get("/api/endpoints")
        assert response.status_code == 200, response.text
        return next(e["secret"] for e in response.json()["data"] if e["env"] == env)

    def post(
        self, env: str, body: bytes, headers: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """POST raw bytes to the receiver of ``env``."""
        return self.http.post(
            f"/api/webhooks/ventra/{env}", content=body, headers=headers, **kwargs
        )

    def deliver(
        self, event: dict[str, Any], env: str = "local", secret: str | None = None
    ) -> httpx.Response:
        """POST an event signed with ``secret`` or the environment's own."""
        body = encode(event)
        signature = sign(secret or self.secret(env), body)
        return self.post(
            env,
            body,
            {"Content-Type": "application/json", "X-Signature": signature},
        )

    def attempt_count(self) -> int:
        """Count stored attempts straight from the database."""
        with self.running.databases.sim_conn() as conn:
            row = conn.execute("SELECT count(*) FROM attempts").fetchone()
        assert row is not None
        return int(row[0])

    def last_attempt(self) -> dict[str, Any]:
        """Return the newest attempt from GET /api/attempts."""
        response = self.api.get("/api/attempts", params={"limit": 1})
        assert response.status_code == 200, response.text
        return response.json()["data"][0]

    def set_mode(self, env: str, mode: str, **options: Any) -> None:
        """Switch an environment's failure mode."""
        self.running.set_mode(env, mode, **options)

    def order(self, order_id: str) -> httpx.Response:
        """GET the merchant's view of an order."""
        return self.api.get(f"/api/orders/{order_id}")


@pytest.fixture
def sim(stack_factory: Callable[..., RunningStack]) -> Any:
    """A VentraSim alone, each environment with a known secret."""
    running = stack_factory(run_ventra=False)
    for env, secret in SECRETS.items():
        response = running.sim.put(f"/api/endpoints/{env}", json={"secret": secret})
        assert response.status_code == 200, response.text
    http = httpx.Client(base_url=running.info.sim_url or "", timeout=30)
    yield Sim(running, http)
    http.close()
