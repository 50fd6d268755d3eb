"""Crashes and several processes: ``ventra serve`` run as real child processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import Databases, wait_until
from tests.delivery.conftest import ENV
from tests.delivery.processes import API_KEY, Serve, server_url
from tests.delivery.receiver import Received, Receiver

KILLS = 20


@pytest.fixture
def serves(databases: Databases, tmp_path: Path) -> Iterator[list[Serve]]:
    """Two restartable serve processes on the test's database, killed after it."""
    url = server_url(databases)
    running = [Serve(url, tmp_path / f"serve{i}") for i in range(2)]
    try:
        yield running
    finally:
        for serve in running:
            serve.kill()


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"x-api-key": API_KEY}, timeout=30)


def flaky(rng: random.Random, failure_rate: float, max_delay: float) -> Any:
    """Build a receiver that is slow now and then and fails at ``failure_rate``."""

    async def respond(request: Received) -> web.StreamResponse:
        await asyncio.sleep(rng.uniform(0, max_delay))
        return web.Response(status=500 if rng.random() < failure_rate else 200)

    return respond


def statuses(databases: Databases) -> Counter[str]:
    with databases.ventra_conn() as conn:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return Counter(dict(rows.fetchall()))


def recorded_attempts(databases: Databases) -> list[tuple[str, int, str, str | None]]:
    with databases.ventra_conn() as conn:
        return conn.execute(
            "SELECT event_id, number, status, error_kind FROM delivery_attempts"
        ).fetchall()


def event_ids(databases: Databases) -> set[str]:
    with databases.ventra_conn() as conn:
        return {row[0] for row in conn.execute("SELECT id FROM events")}


def all_delivered(databases: Databases, count: int) -> bool:
    return statuses(databases) == Counter({"delivered": count})


@pytest.mark.timeout(180)
def test_sigkill_loses_no_event(
    serves: list[Serve], databases: Databases, receiver: Receiver
) -> None:
    """20 SIGKILLs during delivery: every event arrives once per id, cuts recorded."""
    rng = random.Random()
    receiver.respond = flaky(rng, failure_rate=0.15, max_delay=0.3)
    serve = serves[0]
    with api(serve.start()) as client:
        client.put(f"/v1/webhook-endpoints/{ENV}", json={"url": receiver.url()})
        endpoints = client.get("/v1/webhook-endpoints").json()["data"]
        secret = next(e["secret"] for e in endpoints if e["env"] == ENV)
        for index in range(100):
            order = client.post("/v1/orders", json={"amount": 1000, "env": ENV}).json()
            if index % 2 == 0:
                client.post(f"/v1/orders/{order['id']}/pay")

    kill_moments = []
    moment = rng.uniform(0.1, 1.5)
    for _ in range(KILLS):
        time.sleep(moment)
        serve.kill()
        kill_moments.append(round(moment, 2))
        if rng.random() < 0.25:
            serve.spawn()  # the next kill comes while it starts, ready or not
            moment = rng.uniform(0.05, 0.6)
        else:
            serve.start()
            moment = rng.uniform(0.1, 1.5)
    if serve.url is None:
        serve.wait_ready()
    wait_until(lambda: all_delivered(databases, 200), timeout=90, interval=0.5)

    ids_by_position: dict[tuple[str, int], set[str]] = defaultdict(set)
    for request in receiver.posts():
        event = request.event()
        ids_by_position[(event["order_id"], event["sequence"])].add(event["id"])
        assert event["id"] == request.event_id
    records = recorded_attempts(databases)
    interrupted = [r for r in records if r[2] == "interrupted"]
    received = Counter((r.event_id, r.attempt) for r in receiver.posts())

    assert serve.starts == KILLS + 1, kill_moments
    assert {r.event_id for r in receiver.posts()} == event_ids(databases)
    assert len(event_ids(databases)) == 200
    assert max(len(ids) for ids in ids_by_position.values()) == 1
    assert interrupted, kill_moments
    assert {r[3] for r in interrupted} == {"interrupted"}
    assert [r for r in records if r[2] == "in_flight"] == []
    assert set(received) <= {(r[0], r[1]) for r in records}
    assert secret not in serve.logs()
    assert API_KEY not in serve.logs()


async def create_orders(urls: list[str], count: int) -> None:
    """Create ``count`` orders, spread over the servers, 16 at a time."""
    gate = asyncio.Semaphore(16)
    clients = [
        httpx.AsyncClient(base_url=url, headers={"x-api-key": API_KEY}, timeout=60)
        for url in urls
    ]

    async def create(index: int) -> None:
        async with gate:
            client = clients[index % len(clients)]
            response = await client.post("/v1/orders", json={"amount": 500, "env": ENV})
            assert response.status_code == 201, response.text

    try:
        await asyncio.gather(*(create(i) for i in range(count)))
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.timeout(180)
def test_two_processes_send_once(
    serves: list[Serve], databases: Databases, receiver: Receiver
) -> None:
    """Two processes on one database deliver 2,000 events, no attempt twice."""
    receiver.respond = flaky(random.Random(), failure_rate=0.05, max_delay=0.0)
    urls = [serve.start() for serve in serves]
    with api(urls[0]) as client:
        client.put(f"/v1/webhook-endpoints/{ENV}", json={"url": receiver.url()})

    asyncio.run(create_orders(urls, 2000))
    wait_until(lambda: all_delivered(databases, 2000), timeout=90, interval=0.5)
    pairs = Counter((r.event_id, r.attempt) for r in receiver.posts())
    per_process = [serve.logs().count("delivery attempt event_id=") for serve in serves]

    assert len({event_id for event_id, _ in pairs}) == 2000
    assert max(pairs.values()) == 1
    assert sum(pairs.values()) == len(recorded_attempts(databases))
    assert min(per_process) > 0, per_process
