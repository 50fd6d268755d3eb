"""Failure modes respond as described, and each attempt records its mode."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.sim.conftest import Sim, make_event


def test_normal_valid_returns_200(sim: Sim) -> None:
    """Normal mode accepts a validly signed event."""
    response = sim.deliver(make_event("ord_n", 1))

    assert response.status_code == 200
    assert sim.last_attempt()["mode"] == "normal"


def test_normal_invalid_returns_401(sim: Sim) -> None:
    """Normal mode returns 401 for a bad signature, so Ventra retries."""
    response = sim.deliver(make_event("ord_n", 1), secret="not-the-secret")

    assert response.status_code == 401
    assert sim.last_attempt()["signature_valid"] is False


@pytest.mark.parametrize(
    ("mode", "options", "status", "retry_after"),
    [
        ("offline", {}, 503, None),
        ("status", {"status": 500}, 500, None),
        ("status", {"status": 410}, 410, None),
        ("status", {"status": 429, "retry_after": 7}, 429, "7"),
        ("status", {"status": 202}, 202, None),
    ],
    ids=["offline", "status_500", "status_410", "status_429", "status_202"],
)
def test_mode_returns_status(
    sim: Sim, mode: str, options: dict[str, Any], status: int, retry_after: str | None
) -> None:
    """Offline and fixed-status modes return their status at once."""
    sim.set_mode("local", mode, **options)
    started = time.monotonic()

    response = sim.deliver(make_event("ord_m", 1))

    elapsed = time.monotonic() - started
    attempt = sim.last_attempt()
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    assert elapsed < 2
    assert attempt["mode"] == mode
    assert attempt["status_code"] == status


def test_mode_applies_per_environment(sim: Sim) -> None:
    """A mode set on one environment leaves the others normal."""
    sim.set_mode("sandbox", "offline")

    local = sim.deliver(make_event("ord_l", 1))
    sandbox = sim.deliver(make_event("ord_s", 1, env="sandbox"), env="sandbox")

    assert local.status_code == 200
    assert sandbox.status_code == 503


def test_slow_mode_delays_response(sim: Sim) -> None:
    """Slow mode responds as normal mode after the configured delay."""
    sim.set_mode("local", "slow", slow_ms=400)
    started = time.monotonic()

    response = sim.deliver(make_event("ord_slow", 1))

    elapsed = time.monotonic() - started
    attempt = sim.last_attempt()
    assert response.status_code == 200
    assert elapsed >= 0.4
    assert attempt["mode"] == "slow"
    assert attempt["held_ms"] >= 400
    assert attempt["mode_options"] == {"mode": "slow", "slow_ms": 400}


def test_timeout_mode_sender_gives_up(sim: Sim) -> None:
    """Timeout mode keeps the request open until the sender hangs up, and records how long."""
    sim.set_mode("local", "timeout", timeout_cap_seconds=30)
    before = sim.attempt_count()

    with pytest.raises(httpx.ReadTimeout):
        sim.http.post(
            "/api/webhooks/ventra/local",
            content=b"{}",
            headers={"X-Signature": "0"},
            timeout=httpx.Timeout(5, read=0.6),
        )

    wait_until(lambda: sim.attempt_count() == before + 1, timeout=10)
    attempt = sim.last_attempt()
    assert attempt["mode"] == "timeout"
    assert attempt["outcome"] == "sender_gave_up"
    assert attempt["status_code"] is None
    assert 550 <= attempt["held_ms"] < 5000


def test_timeout_mode_cap_returns_504(sim: Sim) -> None:
    """Timeout mode returns 504 when its cap passes before the sender gives up."""
    sim.set_mode("local", "timeout", timeout_cap_seconds=1)

    response = sim.deliver(make_event("ord_cap", 1))

    attempt = sim.last_attempt()
    assert response.status_code == 504
    assert attempt["outcome"] == "timeout_cap_reached"
    assert 1000 <= attempt["held_ms"] < 3000


def test_timeout_mode_released_on_stop(sim: Sim) -> None:
    """Stopping the server ends a held request at once and records it."""
    sim.set_mode("local", "timeout", timeout_cap_seconds=60)
    before = sim.attempt_count()
    server = sim.running.background.stack.sim
    assert server is not None and server.receiver is not None
    receiver = server.receiver
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(sim.post("local", b"{}", timeout=20))
    )

    thread.start()
    wait_until(lambda: receiver.holding == 1, timeout=5)
    started = time.monotonic()
    sim.running.background.call(server.stop())
    thread.join(10)

    assert time.monotonic() - started < 5
    assert result[0].status_code == 503
    assert sim.attempt_count() == before + 1


def test_flaky_fails_about_its_percent(sim: Sim) -> None:
    """Flaky mode at 30% fails between 15% and 45% of 200 requests."""
    sim.set_mode("local", "flaky", flaky_percent=30)
    event = make_event("ord_flaky", 1)

    statuses = [
        sim.deliver(event, secret=sim.secret("local")).status_code for _ in range(200)
    ]

    failures = statuses.count(503)
    assert 30 <= failures <= 90
    assert statuses.count(200) == 200 - failures


def test_flaky_attempts_record_mode(sim: Sim) -> None:
    """Every flaky-mode attempt records the mode and its percent."""
    sim.set_mode("local", "flaky", flaky_percent=50)

    for sequence in range(1, 11):
        sim.deliver(make_event("ord_fm", sequence))

    attempts = sim.api.get("/api/attempts", params={"limit": 10}).json()["data"]
    assert {a["mode"] for a in attempts} == {"flaky"}
    assert {a["mode_options"]["flaky_percent"] for a in attempts} == {50}
