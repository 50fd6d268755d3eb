"""Concurrent deliveries of one event: one event, every attempt stored."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.sim.conftest import Sim, encode, make_event, sign

DELIVERIES = 50


async def _post_all(url: str, body: bytes, signature: str) -> list[int]:
    limits = httpx.Limits(max_connections=DELIVERIES)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/webhooks/ventra/local",
                    content=body,
                    headers={"X-Signature": signature, "X-Ventra-Attempt": str(n)},
                )
                for n in range(1, DELIVERIES + 1)
            )
        )
    return [r.status_code for r in responses]


def test_concurrent_deliveries_one_event(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    """Fifty concurrent deliveries store one event and fifty attempts."""
    caplog.set_level(logging.WARNING)
    event = make_event("ord_conc", 1)
    body = encode(event)

    statuses = asyncio.run(
        _post_all(sim.running.info.sim_url or "", body, sign(sim.secret("local"), body))
    )

    stored = sim.api.get(f"/api/events/{event['id']}").json()
    events = sim.api.get("/api/events").json()["data"]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(200 <= status < 300 for status in statuses)
    assert len(events) == 1
    assert stored["attempt_count"] == DELIVERIES
    assert len(stored["attempts"]) == DELIVERIES
    assert sorted(a["delivery_attempt"] for a in stored["attempts"]) == list(
        range(1, DELIVERIES + 1)
    )
    assert sim.order("ord_conc").json()["sequence"] == 1
    assert problems == []


def test_concurrent_duplicate_flag(sim: Sim) -> None:
    """Exactly one of the concurrent deliveries is reported as the first."""
    event = make_event("ord_dup", 1)
    body = encode(event)
    signature = sign(sim.secret("local"), body)

    async def post_all() -> list[bool]:
        async with httpx.AsyncClient(base_url=sim.running.info.sim_url or "") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/webhooks/ventra/local",
                        content=body,
                        headers={"X-Signature": signature},
                    )
                    for _ in range(10)
                )
            )
        return [r.json()["duplicate"] for r in responses]

    duplicates = asyncio.run(post_all())

    assert duplicates.count(False) == 1
