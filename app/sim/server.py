"""Assemble and run the VentraSim server."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.config import write_private_file
from app.core.database import create_engine
from app.core.http import (
    MAX_BODY_BYTES,
    MAX_BODY_KEY,
    Handler,
    error_middleware,
    request_guard,
    served_hosts,
)
from app.sim import actions
from app.sim.api import CONTEXT, RECEIVER_PREFIX, SimContext, routes, token_middleware
from app.sim.client import VentraClient
from app.sim.endpoints import EndpointRegistry
from app.sim.receiver import MAX_WEBHOOK_BYTES, Receiver
from app.sim.store import ReceiverStore

log = logging.getLogger("sim.server")

# Seconds that stopping waits for requests in progress, such as one held
# by the timeout mode, before cancelling them.
SHUTDOWN_TIMEOUT = 2.0


def resolve_token(configured: str | None, runtime_dir: Path) -> str:
    """Return the management token: configured, or generated once and kept."""
    if configured:
        return configured
    path = runtime_dir / "sim_token"
    if path.exists():
        # Tighten a file whose mode was loosened by hand, because it contains a
        # credential.
        path.chmod(0o600)
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = "vst_" + secrets.token_urlsafe(32)
    write_private_file(path, token)
    return token


@dataclass
class SimOptions:
    """Settings of the VentraSim server, taken from the configuration."""

    database: URL
    runtime_dir: Path
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 3001
    ventra_base_url: str | None = None
    ventra_api_key: str | None = None
    extra_hosts: set[str] = field(default_factory=set)


class SimServer:
    """The merchant simulator's HTTP server."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.engine: AsyncEngine | None = None
        self.context: SimContext | None = None
        self.receiver: Receiver | None = None
        self._runner: web.AppRunner | None = None
        self._hosts: set[str] = set()
        self.url = ""
        self.token = resolve_token(options.token, options.runtime_dir)

    def build_app(self) -> web.Application:
        self.engine = create_engine(self.options.database)
        sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        registry = EndpointRegistry(sessions)
        connection = {}
        if self.options.ventra_base_url:
            connection["base_url"] = self.options.ventra_base_url
        if self.options.ventra_api_key:
            connection["api_key"] = self.options.ventra_api_key
        self.receiver = Receiver(
            registry, ReceiverStore(self.engine), hosts=lambda: self._hosts
        )
        self.context = SimContext(
            sessions=sessions,
            registry=registry,
            receiver=self.receiver,
            client=VentraClient(),
            token=self.token,
            default_connection=connection,
        )
        app = web.Application(
            client_max_size=max(MAX_BODY_BYTES, MAX_WEBHOOK_BYTES),
            middlewares=[error_middleware, self._guard(), token_middleware],
        )
        app[CONTEXT] = self.context
        app[MAX_BODY_KEY] = MAX_BODY_BYTES
        app.add_routes(routes)
        app.add_routes(actions.routes)
        return app

    def _guard(self) -> Any:
        """Build the Host and Origin check for every route but the receiver's.

        The receiver applies the same check itself after storing the
        request, so a rejected delivery is still on record.
        """
        guard = request_guard(lambda: self._hosts)

        @web.middleware
        async def middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            if request.path.startswith(RECEIVER_PREFIX):
                return await handler(request)
            return await guard(request, handler)

        return middleware

    async def start(self) -> str:
        """Load the settings, bind the port and return the server's URL."""
        app = self.build_app()
        assert self.context is not None
        await self.context.registry.load()
        await self.context.client.start()
        # auto_decompress=False: the receiver must see and verify the bytes as
        # sent, and a compressed body could expand past the size limit.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._hosts.update(
            served_hosts(self.options.host, port) | self.options.extra_hosts
        )
        self.url = f"http://{self.options.host}:{port}"
        log.info("ventrasim listening url=%s", self.url)
        return self.url

    def set_default_connection(self, base_url: str, api_key: str) -> None:
        """Set the Ventra connection used when none is saved."""
        assert self.context is not None
        self.context.default_connection.update(base_url=base_url, api_key=api_key)

    async def stop(self) -> None:
        """Release held requests, close the server and the database pool."""
        if self.receiver is not None:
            self.receiver.stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.context is not None:
            await self.context.client.close()
        if self.engine is not None:
            await self.engine.dispose()
        log.info("ventrasim stopped")
