"""Start and stop everything the app runs: PostgreSQL, Ventra, VentraSim.

``Stack`` runs on whatever asyncio loop calls it (the headless server uses
the main loop). ``BackgroundStack`` gives it a loop of its own in a thread,
so the window's Qt loop never serves HTTP or runs the delivery worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy.engine import URL

from app.core.config import ENVIRONMENTS, DataDirLock, Settings
from app.core.database import (
    EmbeddedPostgres,
    ensure_database,
    parse_database_url,
    redact,
    side_urls,
)
from app.core.migrations import upgrade
from app.sim.server import SimOptions, SimServer
from app.ventra.keys import ApiKeyStore
from app.ventra.server import VentraOptions, VentraServer

log = logging.getLogger("ventra.stack")

AUTO_WIRED_URL = re.compile(r"^http://127\.0\.0\.1:\d+/api/webhooks/ventra/[a-z]+$")


@dataclass(frozen=True)
class StackInfo:
    """Addresses and credentials of the running servers."""

    ventra_url: str | None
    sim_url: str | None
    database: str
    api_key: str
    sim_token: str | None

    def ready_line(self) -> dict[str, Any]:
        return {
            "ventra_url": self.ventra_url,
            "sim_url": self.sim_url,
            "database": self.database,
        }


class Stack:
    """The servers of one app instance on the current event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        ventra_db: URL | None = None,
        sim_db: URL | None = None,
        ventra_hooks: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._ventra_db = ventra_db
        self._sim_db = sim_db
        self._ventra_hooks = ventra_hooks or {}
        self._embedded: EmbeddedPostgres | None = None
        self._lock = DataDirLock(settings.data_dir)
        self.ventra: VentraServer | None = None
        self.sim: SimServer | None = None
        self.info: StackInfo | None = None

    async def _databases(self) -> tuple[URL, URL, str]:
        if self._ventra_db is not None and self._sim_db is not None:
            return self._ventra_db, self._sim_db, redact(self._ventra_db)
        if self.settings.database_url:
            server = parse_database_url(self.settings.database_url)
            ventra_db, sim_db = side_urls(server, embedded=False)
            return ventra_db, sim_db, redact(server)
        self._embedded = EmbeddedPostgres(self.settings.data_dir)
        server = await asyncio.to_thread(self._embedded.start)
        ventra_db, sim_db = side_urls(server, embedded=True)
        return ventra_db, sim_db, f"embedded PostgreSQL in {self._embedded.pgdata}"

    async def start(self) -> StackInfo:
        """Prepare the databases, start the servers and wire them together."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            ventra_db, sim_db, description = await self._databases()
            sides = []
            if settings.run_ventra:
                sides.append(("ventra", ventra_db))
            if settings.run_sim:
                sides.append(("sim", sim_db))
            for side, url in sides:
                await asyncio.to_thread(ensure_database, url)
                await asyncio.to_thread(upgrade, side, url)
            if settings.run_ventra:
                options: dict[str, Any] = {
                    "database": ventra_db,
                    "api_key": settings.api_key,
                    "runtime_dir": settings.runtime_dir,
                    "host": settings.host,
                    "port": settings.ventra_port,
                    "retry_schedule": settings.retry_schedule,
                    "delivery_timeout": settings.delivery_timeout,
                    "webhook_url": settings.webhook_url,
                    "webhook_secret": settings.webhook_secret,
                    "ventrasim_base_url": settings.ventrasim_base_url,
                    "internal_token": settings.internal_token,
                }
                # Tests override options here, such as a failure before commit.
                options.update(self._ventra_hooks)
                self.ventra = VentraServer(VentraOptions(**options))
                await self.ventra.start()
            api_key = (
                ApiKeyStore(settings.api_key, settings.runtime_dir).current()
                or settings.api_key
            )
            if settings.run_sim:
                self.sim = SimServer(
                    SimOptions(
                        database=sim_db,
                        runtime_dir=settings.runtime_dir,
                        token=settings.sim_token,
                        host=settings.host,
                        port=settings.sim_port,
                        ventra_base_url=self.ventra.url if self.ventra else None,
                        ventra_api_key=api_key,
                    )
                )
                await self.sim.start()
            if self.ventra is not None and self.sim is not None:
                await self._wire(api_key)
        except BaseException:
            await self.stop()
            raise
        self.info = StackInfo(
            ventra_url=self.ventra.url if self.ventra else None,
            sim_url=self.sim.url if self.sim else None,
            database=description,
            api_key=api_key,
            sim_token=self.sim.token if self.sim else None,
        )
        return self.info

    async def _wire(self, api_key: str) -> None:
        """Point Ventra's endpoints at this VentraSim and share the secrets.

        Only endpoints left unset, or wired to a VentraSim of an earlier run,
        are changed, so a URL or secret the user set is kept.
        """
        assert self.ventra is not None and self.sim is not None
        ventra_headers = {"x-api-key": api_key}
        sim_headers = {"Authorization": f"Bearer {self.sim.token}"}
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(
                f"{self.ventra.url}/v1/webhook-endpoints", headers=ventra_headers
            ) as response:
                response.raise_for_status()
                endpoints = {e["env"]: e for e in (await response.json())["data"]}
            async with http.get(f"{self.sim.url}/api/endpoints", headers=sim_headers) as response:
                response.raise_for_status()
                receivers = {e["env"]: e for e in (await response.json())["data"]}
            for env in ENVIRONMENTS:
                url = f"{self.sim.url}/api/webhooks/ventra/{env}"
                current = endpoints[env]["url"]
                if current is None or (
                    AUTO_WIRED_URL.match(current) and not self.settings.webhook_url
                ):
                    async with http.put(
                        f"{self.ventra.url}/v1/webhook-endpoints/{env}",
                        json={"url": url},
                        headers=ventra_headers,
                    ) as response:
                        response.raise_for_status()
                if receivers[env]["secret"] is None:
                    async with http.put(
                        f"{self.sim.url}/api/endpoints/{env}",
                        json={"secret": endpoints[env]["secret"]},
                        headers=sim_headers,
                    ) as response:
                        response.raise_for_status()
        log.info("endpoints wired ventra=%s sim=%s", self.ventra.url, self.sim.url)

    async def stop(self) -> None:
        """Stop both servers together, then the embedded PostgreSQL.

        Together, because each may wait on the other: Ventra's worker
        finishes the POSTs in flight, which end when VentraSim closes the
        requests it holds.
        """
        servers = [s for s in (self.ventra, self.sim) if s is not None]
        results = await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)
        for server, result in zip(servers, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "server stop failed server=%s error=%r", type(server).__name__, result
                )
        self.sim = None
        self.ventra = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None
        self._lock.release()


class BackgroundStack:
    """Run a ``Stack`` on its own asyncio loop in a daemon thread."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="servers", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.stack.start())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self, timeout: float = 120.0) -> StackInfo:
        """Start the thread and wait until the servers listen."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the servers did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        assert self.stack.info is not None
        return self.stack.info

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the servers' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the servers and the thread."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self.stack.stop(), timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
