"""Measure Ventra's API: orders created and paid per second, and latency.

Runs Ventra and VentraSim in this process (servers on a thread of their
own, as the window runs them) against the embedded PostgreSQL, or against
``--database-url``. Beside it runs a bare aiohttp handler that does one
INSERT per request on the same PostgreSQL and the same loop, the floor of
what any endpoint here can cost. The ratio is the number of bare requests
that one created-and-paid order costs.

    python bench/api.py [--seconds 5] [--concurrency 1,16] [--database-url URL]

Each operation of the Ventra run is ``POST /v1/orders`` then
``POST /v1/orders/{id}/pay``; its latency covers both requests. Webhooks
are delivered to VentraSim meanwhile, as in normal use.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.config import Settings
from app.core.database import create_engine, ensure_database
from app.stack import BackgroundStack, Stack

Operation = Callable[[aiohttp.ClientSession], Awaitable[None]]


@dataclass
class Result:
    """Throughput and latency of one run."""

    label: str
    concurrency: int
    operations: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index] * 1000


async def run(
    label: str, operation: Operation, concurrency: int, seconds: float
) -> Result:
    """Call ``operation`` from ``concurrency`` tasks for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await operation(http)
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
        await operation(http)  # warm up the connection and the handler
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(label, concurrency, len(latencies), elapsed, latencies)


def ventra_operation(url: str, api_key: str) -> Operation:
    headers = {"x-api-key": api_key}

    async def create_and_pay(http: aiohttp.ClientSession) -> None:
        async with http.post(
            f"{url}/v1/orders", json={"amount": 1999}, headers=headers
        ) as response:
            if response.status != 201:
                raise RuntimeError(
                    f"create failed: {response.status} {await response.text()}"
                )
            order_id = (await response.json())["id"]
        async with http.post(
            f"{url}/v1/orders/{order_id}/pay", headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"pay failed: {response.status} {await response.text()}"
                )

    return create_and_pay


def baseline_operation(url: str) -> Operation:
    async def insert(http: aiohttp.ClientSession) -> None:
        async with http.post(f"{url}/insert", json={"amount": 1999}) as response:
            if response.status != 201:
                raise RuntimeError(f"baseline failed: {response.status}")
            await response.read()

    return insert


class Baseline:
    """A bare aiohttp server whose one handler does one INSERT."""

    def __init__(self, database: URL) -> None:
        self._database = database
        self._engine: AsyncEngine | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        await asyncio.to_thread(ensure_database, self._database)
        self._engine = create_engine(self._database)
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS bench_rows ("
                    " id bigserial PRIMARY KEY, body text NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                )
            )
        app = web.Application()
        app.router.add_post("/insert", self._insert)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def _insert(self, request: web.Request) -> web.Response:
        body = await request.text()
        assert self._engine is not None
        async with self._engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO bench_rows (body) VALUES (:b)"), {"b": body}
            )
        return web.json_response({"ok": True}, status=201)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._engine is not None:
            await self._engine.dispose()


def print_table(results: list[Result]) -> None:
    print(f"{'run':<28}{'conc.':>6}{'ops':>8}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        print(
            f"{r.label:<28}{r.concurrency:>6}{r.operations:>8}{r.per_second:>10.1f}"
            f"{r.percentile(0.50):>9.2f}{r.percentile(0.99):>9.2f}"
        )


async def main_async(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ventra-bench-"))
    settings = Settings(
        data_dir=data_dir, ventra_port=0, sim_port=0, database_url=args.database_url
    )
    background = BackgroundStack(Stack(settings))
    info = await asyncio.to_thread(background.start)
    stack = background.stack
    assert stack.ventra is not None and info.ventra_url is not None
    bench_db = stack.ventra.options.database.set(
        database=f"{stack.ventra.options.database.database}_bench"
    )
    baseline = Baseline(bench_db)
    baseline_url = await asyncio.to_thread(background.call, baseline.start())
    print(f"database: {info.database}", flush=True)

    results: list[Result] = []
    try:
        for concurrency in args.concurrency:
            results.append(
                await run(
                    "bare INSERT handler",
                    baseline_operation(baseline_url),
                    concurrency,
                    args.seconds,
                )
            )
            results.append(
                await run(
                    "ventra create + pay",
                    ventra_operation(info.ventra_url, info.api_key),
                    concurrency,
                    args.seconds,
                )
            )
    finally:
        await asyncio.to_thread(background.call, baseline.stop())
        await asyncio.to_thread(background.stop)
        shutil.rmtree(data_dir, ignore_errors=True)

    print_table(results)
    for concurrency in args.concurrency:
        bare, ventra = (r for r in results if r.concurrency == concurrency)
        print(
            f"concurrency {concurrency}: one created-and-paid order costs"
            f" {bare.per_second / ventra.per_second:.1f} bare INSERT requests"
            f" (throughput ratio)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 16],
        help="comma-separated numbers of concurrent clients (default 1,16)",
    )
    parser.add_argument(
        "--database-url", help="external PostgreSQL instead of the embedded one"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main_async(parse_args()))
