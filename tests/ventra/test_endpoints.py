"""Webhook endpoints per environment: defaults, changes and secrets from VentraSim."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable

import pytest

from tests.conftest import RunningStack


def closed_port() -> int:
    """Return a loopback port this test bound and released, so nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


UNUSED_URL = f"http://127.0.0.1:{closed_port()}"


def endpoints(stack: RunningStack) -> dict[str, dict]:  # type: ignore[type-arg]
    response = stack.ventra.get("/v1/webhook-endpoints")
    assert response.status_code == 200, response.text
    return {e["env"]: e for e in response.json()["data"]}


def test_one_per_environment(stack: RunningStack) -> None:
    """Each environment has an endpoint wired to VentraSim and enabled."""
    found = endpoints(stack)

    assert sorted(found) == ["local", "sandbox", "staging"]
    for env, endpoint in found.items():
        assert endpoint["url"].endswith(f"/api/webhooks/ventra/{env}")
        assert endpoint["enabled"] is True


def test_generated_secret_form(stack: RunningStack) -> None:
    """A generated secret is whsec_ and the base64 of 24 bytes."""
    secret = endpoints(stack)["local"]["secret"]

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


@pytest.mark.parametrize(
    "change",
    [
        {"url": f"{UNUSED_URL}/hook"},
        {"secret": "whsec_changed_secret"},
        {"enabled": False},
    ],
    ids=["url", "secret", "enabled"],
)
def test_update(stack: RunningStack, change: dict[str, object]) -> None:
    """PUT changes one field and leaves the others."""
    before = endpoints(stack)["staging"]

    response = stack.ventra.put("/v1/webhook-endpoints/staging", json=change)

    assert response.status_code == 200, response.text
    after = endpoints(stack)["staging"]
    for field, value in change.items():
        assert after[field] == value
    for field in {"url", "secret", "enabled"} - set(change):
        assert after[field] == before[field]


def test_configured_defaults(stack_factory: Callable[..., RunningStack]) -> None:
    """WEBHOOK_URL and WEBHOOK_SECRET are the default of every endpoint."""
    stack = stack_factory(
        webhook_url=f"{UNUSED_URL}/configured", webhook_secret="whsec_configured"
    )

    for endpoint in endpoints(stack).values():
        assert endpoint["url"] == f"{UNUSED_URL}/configured"
        assert endpoint["secret"] == "whsec_configured"


def test_secret_from_sim(stack_factory: Callable[..., RunningStack]) -> None:
    """With VENTRASIM_BASE_URL, Ventra takes each secret VentraSim stores."""
    sim = stack_factory(run_ventra=False)
    sim.sim.put("/api/endpoints/sandbox", json={"secret": "whsec_set_on_the_sim"})

    ventra = stack_factory(
        run_sim=False,
        ventrasim_base_url=sim.info.sim_url,
        internal_token=sim.info.sim_token,
    )

    assert endpoints(ventra)["sandbox"]["secret"] == "whsec_set_on_the_sim"
    assert endpoints(ventra)["local"]["secret"].startswith("whsec_")


def test_secret_from_sim_unreachable(
    stack_factory: Callable[..., RunningStack],
) -> None:
    """An unreachable VentraSim falls back to generated secrets."""
    ventra = stack_factory(
        run_sim=False, ventrasim_base_url=UNUSED_URL, internal_token="x"
    )

    assert endpoints(ventra)["local"]["secret"].startswith("whsec_")
