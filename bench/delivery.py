"""Webhook delivery throughput: Ventra's worker beside a bare aiohttp client.

For each concurrency level the script stores a batch of events, starts a
delivery worker and times it until every attempt is recorded as succeeded:
event stored, signed POST, 2xx, attempt recorded. In the same run, a bare
aiohttp client posts the same bodies to the same receiver at the same
concurrency, with no signing and no database. The receiver runs in a child
process and responds with 204.

Beside each rate the script prints this process's CPU time per operation
in microseconds (``cpu_us``). PostgreSQL and the receiver run in other
processes, so their CPU time is not in that column.

    .venv/bin/python bench/delivery.py [--events 10000] [--database-url URL]

Without ``--database-url`` (or ``DATABASE_URL``) it starts an embedded
PostgreSQL in a temporary folder. It creates, and drops at the end, a
database of its own on the server. After storing each batch it runs
``ANALYZE``, as autovacuum would on a database in use, so the planner
has row counts for the due deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.core.database import (
    EmbeddedPostgres,
    create_engine,
    ensure_database,
    libpq_conninfo,
    parse_database_url,
)
from app.core.migrations import upgrade
from app.ventra import events
from app.ventra.delivery import DeliveryConfig, DeliveryWorker
from app.ventra.endpoints import EndpointService
from app.ventra.ids import new_id
from app.ventra.models import Order

CONCURRENCY = (1, 16, 64)
ENV = "sandbox"


def serve_receiver() -> None:
    """Run the receiver: print its port, respond to every POST with 204."""

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def store_events(sessions: async_sessionmaker, count: int) -> list[bytes]:
    """Store ``count`` events with pending deliveries; return their bodies."""
    bodies = []
    now = datetime.now(UTC)
    async with sessions() as session:
        for _ in range(count):
            order = Order(
                id=new_id("ord"),
                env=ENV,
                amount=1000,
                description="bench",
                status="pending_payment",
                held_amount=0,
                released_amount=0,
                refunded_amount=0,
                last_sequence=0,
                created_at=now,
                updated_at=now,
            )
            session.add(order)
            await session.flush()  # the event refers to the order
            event = await events.emit(
                session,
                order=order,
                charge=None,
                event_type="charge.created",
                now=now,
                schedule="fast",
            )
            bodies.append(event.body)
        await session.commit()
    async with sessions() as session:
        await session.execute(text("ANALYZE deliveries, events, delivery_attempts"))
        await session.commit()
    return bodies


async def outstanding(sessions: async_sessionmaker) -> bool:
    """Tell whether any delivery still waits for a recorded success."""
    async with sessions() as session:
        return bool(
            await session.scalar(
                text(
                    "SELECT EXISTS (SELECT 1 FROM deliveries"
                    " WHERE status IN ('pending', 'in_flight'))"
                )
            )
        )


@dataclass(frozen=True)
class Measured:
    """Operations per second, and this process's CPU time per operation."""

    per_second: float
    cpu_us: float


class Stopwatch:
    """Wall time and this process's CPU time since creation."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def measured(self, count: int) -> Measured:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return Measured(count / wall, cpu / count * 1e6)


async def ventra_rate(
    sessions: async_sessionmaker, concurrency: int, count: int
) -> Measured:
    """Time the worker from start until the ``count`` new events are delivered."""
    await store_events(sessions, count)
    worker = DeliveryWorker(sessions, DeliveryConfig(concurrency=concurrency))
    await worker.start()
    stopwatch = Stopwatch()
    task = asyncio.create_task(worker.run())
    # The receiver always returns 204, so every delivery ends delivered.
    while await outstanding(sessions):
        await asyncio.sleep(0.05)
    result = stopwatch.measured(count)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    return result


async def bare_rate(url: str, bodies: list[bytes], concurrency: int) -> Measured:
    """Post ``bodies`` with a plain aiohttp client at ``concurrency``."""
    queue = list(reversed(bodies))
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency + 8)

    async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:

        async def post_all() -> None:
            while queue:
                body = queue.pop()
                async with http.post(url, data=body, headers=headers) as response:
                    assert 200 <= response.status < 300, response.status

        stopwatch = Stopwatch()
        await asyncio.gather(*(post_all() for _ in range(concurrency)))
        return stopwatch.measured(len(bodies))


async def run(database: URL, url: str, events_per_level: int) -> None:
    """Print one line per concurrency level."""
    engine = create_engine(database)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        await EndpointService(sessions).ensure_defaults(url, None)
        print(
            f"{'concurrency':>11} {'events':>7} {'ventra/s':>9} {'cpu_us':>7}"
            f" {'bare/s':>8} {'cpu_us':>7} {'ratio':>6}"
        )
        for concurrency in CONCURRENCY:
            count = events_per_level if concurrency > 1 else events_per_level // 4
            bodies = bare_bodies(count)
            bare = await bare_rate(url, bodies, concurrency)
            ventra = await ventra_rate(sessions, concurrency, count)
            print(
                f"{concurrency:>11} {count:>7} {ventra.per_second:>9.0f}"
                f" {ventra.cpu_us:>7.0f} {bare.per_second:>8.0f} {bare.cpu_us:>7.0f}"
                f" {ventra.per_second / bare.per_second:>6.2f}",
                flush=True,
            )
    finally:
        await engine.dispose()


def bench(server: URL, events_per_level: int) -> None:
    """Start the receiver and a scratch database, run, clean both up."""
    database = server.set(database=f"bench_{uuid.uuid4().hex[:8]}")
    ensure_database(database)
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        upgrade("ventra", database)
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
        asyncio.run(run(database, url, events_per_level))
    finally:
        receiver.kill()
        receiver.wait()
        drop_database(database)


def bare_bodies(count: int) -> list[bytes]:
    """Return event bodies like the stored ones, for the bare client."""
    order_id = new_id("ord")
    now = datetime.now(UTC)
    return [
        events.encode_body(
            {
                "id": new_id("evt"),
                "type": "charge.created",
                "created_at": events.rfc3339(now),
                "env": ENV,
                "order_id": order_id,
                "sequence": 1,
                "data": {"id": order_id, "status": "pending_payment", "amount": 1000},
            }
        )
        for _ in range(count)
    ]


def drop_database(database: URL) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        libpq_conninfo(database.set(database="postgres")), autocommit=True
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.database or "")
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=10000, help="events per level (a quarter at 1)"
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        serve_receiver()
        return 0
    if args.database_url:
        server = parse_database_url(args.database_url).set(
            drivername="postgresql+psycopg"
        )
        bench(server, args.events)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        embedded = EmbeddedPostgres(Path(folder))
        try:
            server = embedded.start()
            bench(server, args.events)
        finally:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
