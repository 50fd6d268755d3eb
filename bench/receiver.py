"""Measure VentraSim's webhook ingest rate beside a bare aiohttp receiver.

Both servers run in one child process on 127.0.0.1 and write to the same
PostgreSQL through the app's engine settings (SQLAlchemy async, psycopg).
The bare receiver reads the body, checks X-Signature with HMAC-SHA256 and
inserts one row. VentraSim does its full work: both signature schemes,
parsing, the attempt, the event and the order projection, and one INFO
log line per attempt, written to a file. The client runs in this process and
posts distinct, validly signed events with Ventra's headers.

Usage::

    python bench/receiver.py [--database-url postgresql://...] [--requests N]

Without ``--database-url`` (or ``DATABASE_URL``) it starts the embedded
PostgreSQL in a temporary directory. It prints requests per second at
concurrency 1 and 64 for both receivers, VentraSim's share of the bare
rate, and the server process's CPU milliseconds per request, which other
load on the machine disturbs less than the rates. Results depend on the
machine; this is not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import psycopg
from aiohttp import web
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.core.database import (
    EmbeddedPostgres,
    create_engine,
    libpq_conninfo,
    parse_database_url,
)
from app.core.migrations import upgrade
from app.sim.server import SimOptions, SimServer

SECRET = "whsec_" + base64.b64encode(b"bench-secret-24-bytes-ok").decode("ascii")
CONCURRENCIES = (1, 64)
ROUNDS = 3
BARE_TABLE = """
CREATE TABLE IF NOT EXISTS bare_webhooks (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    body bytea NOT NULL
)
"""


def bare_app(url: URL) -> web.Application:
    """Build the baseline: check the HMAC, insert one row, respond 200."""
    engine = create_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    key = SECRET.encode("utf-8")
    insert = text("INSERT INTO bare_webhooks (body) VALUES (:body)")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        received = request.headers.get("X-Signature", "")
        if not hmac.compare_digest(
            expected.encode(), received.encode("utf-8", "replace")
        ):
            return web.json_response({"error": "invalid_signature"}, status=401)
        async with engine.connect() as connection:
            await connection.execute(insert, {"body": body})
        return web.json_response({"received": True})

    async def dispose(app: web.Application) -> None:
        await engine.dispose()

    async def cpu(request: web.Request) -> web.Response:
        # CPU seconds of the server process, which runs both receivers.
        return web.json_response({"cpu": time.process_time()})

    app = web.Application()
    app.router.add_post("/webhook", handle)
    app.router.add_get("/cpu", cpu)
    app.on_cleanup.append(dispose)
    return app


async def serve(sim_url: URL, bare_url: URL, workdir: Path, pipe: Connection) -> None:
    """Run both receivers until the parent sends a message on ``pipe``."""
    sim = SimServer(SimOptions(database=sim_url, runtime_dir=workdir, port=0))
    await sim.start()
    assert sim.context is not None
    await sim.context.registry.update("local", secret=SECRET)

    runner = web.AppRunner(bare_app(bare_url), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bare_port = runner.addresses[0][1]

    pipe.send(
        {
            "sim": f"{sim.url}/api/webhooks/ventra/local",
            "bare": f"http://127.0.0.1:{bare_port}/webhook",
            "cpu": f"http://127.0.0.1:{bare_port}/cpu",
        }
    )
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    await runner.cleanup()
    await sim.stop()


def child(sim_url: URL, bare_url: URL, workdir: str, pipe: Connection) -> None:
    """Entry point of the server process; logs go to a file at INFO."""
    logging.basicConfig(
        filename=os.path.join(workdir, "servers.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("sqlalchemy", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(sim_url, bare_url, Path(workdir), pipe))


def signed_request(sequence: int) -> tuple[bytes, dict[str, str]]:
    """Build one distinct event with the headers Ventra sends."""
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    order_id = f"ord_{uuid.uuid4().hex[:20]}"
    envelope = {
        "id": event_id,
        "type": "charge.created",
        "created_at": "2026-01-01T00:00:00.000Z",
        "env": "local",
        "order_id": order_id,
        "sequence": 1,
        "data": {
            "id": order_id,
            "env": "local",
            "status": "pending_payment",
            "amount": 1000 + sequence,
            "currency": "BRL",
            "held_amount": 0,
            "released_amount": 0,
            "refunded_amount": 0,
            "description": "bench order",
        },
    }
    body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    stamp = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    standard = hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Ventra-Webhooks/0.1",
        "X-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-Ventra-Event-Id": event_id,
        "X-Ventra-Delivery-Id": f"dlv_{uuid.uuid4().hex[:20]}",
        "X-Ventra-Attempt": "1",
        "X-Ventra-Timestamp": stamp,
        "webhook-id": event_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(standard.digest()).decode(),
    }
    return body, headers


async def blast(url: str, count: int, concurrency: int) -> float:
    """Post ``count`` signed events with ``concurrency`` in flight; return req/s."""
    requests = [signed_request(n) for n in range(count)]
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                body, headers = queue.get_nowait()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    failures += response.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} of {count} requests to {url} were not 200")
    return count / elapsed


def create_databases(server: URL) -> tuple[URL, URL]:
    """Create a migrated VentraSim database and a bare one; return their URLs."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    names = (f"{prefix}_sim", f"{prefix}_bare")
    with psycopg.connect(
        libpq_conninfo(server.set(database="postgres")), autocommit=True
    ) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    sim_url, bare_url = (server.set(database=name) for name in names)
    upgrade("sim", sim_url)
    with psycopg.connect(libpq_conninfo(bare_url), autocommit=True) as conn:
        conn.execute(BARE_TABLE)
    return sim_url, bare_url


def drop_databases(server: URL, *urls: URL) -> None:
    """Drop the databases the benchmark created."""
    with psycopg.connect(
        libpq_conninfo(server.set(database="postgres")), autocommit=True
    ) as conn:
        for url in urls:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(url.database or "")
                )
            )


async def server_cpu(url: str) -> float:
    """Return the CPU seconds the server process has used so far."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return float((await response.json())["cpu"])


def timed_blast(
    urls: dict[str, str], name: str, count: int, concurrency: int
) -> tuple[float, float]:
    """Return the rate and the server's CPU milliseconds per request."""
    before = asyncio.run(server_cpu(urls["cpu"]))
    rate = asyncio.run(blast(urls[name], count, concurrency))
    used = asyncio.run(server_cpu(urls["cpu"])) - before
    return rate, used * 1000 / count


def measure(urls: dict[str, str], requests: int) -> list[dict[str, float]]:
    """Return, per concurrency, the median rate and CPU cost of each receiver."""
    results = []
    for concurrency in CONCURRENCIES:
        count = requests if concurrency > 1 else requests // 3
        asyncio.run(blast(urls["sim"], 100, concurrency))
        asyncio.run(blast(urls["bare"], 100, concurrency))
        samples: dict[str, list[tuple[float, float]]] = {"sim": [], "bare": []}
        for round_number in range(ROUNDS):
            # Alternate which receiver goes first, so drift favours neither.
            order = ("sim", "bare") if round_number % 2 == 0 else ("bare", "sim")
            for name in order:
                samples[name].append(timed_blast(urls, name, count, concurrency))
        row = {"concurrency": concurrency}
        for name, values in samples.items():
            row[f"{name}_rate"] = statistics.median(v[0] for v in values)
            row[f"{name}_cpu_ms"] = statistics.median(v[1] for v in values)
        results.append(row)
    return results


def main() -> int:
    """Run the benchmark and print one line per concurrency."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL server to use (default: the embedded one, started here)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="requests per round at concurrency 64; a third of that at 1",
    )
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="ventra-bench-")
    embedded = None
    if args.database_url:
        server = parse_database_url(args.database_url).set(
            drivername="postgresql+psycopg"
        )
    else:
        embedded = EmbeddedPostgres(Path(workdir))
        server = embedded.start()
    sim_url, bare_url = create_databases(server)

    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=child, args=(sim_url, bare_url, workdir, child_end)
    )
    process.start()
    try:
        if not parent_end.poll(60):
            raise RuntimeError("the servers did not start within 60 s")
        urls = parent_end.recv()
        results = measure(urls, args.requests)
    finally:
        parent_end.send("stop")
        process.join(30)
        drop_databases(server, sim_url, bare_url)
        if embedded is not None:
            embedded.stop()

    print(
        f"{'concurrency':>11} {'ventrasim/s':>12} {'bare/s':>10} {'ratio':>7}"
        f" {'ventrasim cpu ms':>17} {'bare cpu ms':>12}"
    )
    for row in results:
        print(
            f"{row['concurrency']:>11.0f} {row['sim_rate']:>12.0f}"
            f" {row['bare_rate']:>10.0f} {row['sim_rate'] / row['bare_rate']:>7.0%}"
            f" {row['sim_cpu_ms']:>17.3f} {row['bare_cpu_ms']:>12.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
