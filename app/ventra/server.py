"""Assemble and run the Ventra server: database, services, API, worker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.database import create_engine
from app.core.http import (
    MAX_BODY_BYTES,
    MAX_BODY_KEY,
    error_middleware,
    request_guard,
    served_hosts,
)
from app.ventra.api import CONTEXT, VentraContext, auth_middleware, routes
from app.ventra.delivery import DeliveryConfig, DeliveryWorker
from app.ventra.endpoints import EndpointService, fetch_sim_secrets
from app.ventra.idempotency import idempotency_middleware
from app.ventra.keys import ApiKeyStore
from app.ventra.openapi import build_openapi
from app.ventra.orders import OrderPolicy, OrderService
from app.ventra.queries import EventQueries

log = logging.getLogger("ventra.server")

EXPIRY_SWEEP_SECONDS = 1.0
# Seconds that stopping waits for requests in progress before cancelling them.
SHUTDOWN_TIMEOUT = 2.0


@dataclass
class VentraOptions:
    """Settings of the Ventra server, taken from the configuration."""

    database: URL
    api_key: str
    runtime_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    retry_schedule: str = "fast"
    delivery_timeout: float = 10.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    ventrasim_base_url: str | None = None
    internal_token: str | None = None
    run_worker: bool = True
    before_commit: Callable[[str], Awaitable[None]] | None = field(default=None)


class VentraServer:
    """The platform's HTTP server and its background tasks on one loop."""

    def __init__(self, options: VentraOptions) -> None:
        self.options = options
        self.engine: AsyncEngine | None = None
        self.worker: DeliveryWorker | None = None
        self.context: VentraContext | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._hosts: set[str] = set()
        self.url = ""

    def build_app(self) -> web.Application:
        """Create the services and the aiohttp application."""
        options = self.options
        self.engine = create_engine(options.database)
        sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.worker = DeliveryWorker(sessions, DeliveryConfig(timeout=options.delivery_timeout))
        orders = OrderService(
            sessions,
            OrderPolicy(retry_schedule=options.retry_schedule),
            on_events=self.worker.wake,
            before_commit=options.before_commit,
        )
        self.context = VentraContext(
            sessions=sessions,
            orders=orders,
            endpoints=EndpointService(sessions),
            events=EventQueries(sessions),
            worker=self.worker,
            keys=ApiKeyStore(options.api_key, options.runtime_dir),
            openapi=build_openapi(),
        )
        app = web.Application(
            client_max_size=MAX_BODY_BYTES,
            middlewares=[
                error_middleware,
                request_guard(lambda: self._hosts),
                auth_middleware,
                idempotency_middleware,
            ],
        )
        app[CONTEXT] = self.context
        app[MAX_BODY_KEY] = MAX_BODY_BYTES
        app.add_routes(routes)
        return app

    async def start(self) -> str:
        """Listen, start the worker and the expiry sweeper; return the URL."""
        app = self.build_app()
        assert self.context is not None and self.worker is not None
        sim_secrets: dict[str, str] = {}
        if self.options.ventrasim_base_url and not self.options.webhook_secret:
            sim_secrets = await fetch_sim_secrets(
                self.options.ventrasim_base_url, self.options.internal_token
            )
        await self.context.endpoints.ensure_defaults(
            self.options.webhook_url, self.options.webhook_secret, sim_secrets
        )
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._hosts.update(served_hosts(self.options.host, port))
        self.url = f"http://{self.options.host}:{port}"
        if self.options.run_worker:
            await self.worker.start()
            self._tasks.append(asyncio.create_task(self.worker.run(), name="delivery"))
        self._tasks.append(asyncio.create_task(self._sweep_expired(), name="expiry"))
        log.info("ventra listening url=%s", self.url)
        return self.url

    async def _sweep_expired(self) -> None:
        assert self.context is not None
        while True:
            try:
                await self.context.orders.expire_due()
            except Exception as exc:  # noqa: BLE001 - the sweeper must keep running
                log.warning("expiry sweep failed error=%s", exc)
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)

    async def stop(self) -> None:
        """Stop accepting requests, finish in-flight attempts, close the pool."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.worker is not None:
            await self.worker.close()
        if self.engine is not None:
            await self.engine.dispose()
        log.info("ventra stopped")

