"""Assemble and run the VentraSim server."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.config import write_private_file
from app.core.database import create_engine
from app.core.http import (
    MAX_BODY_BYTES,
    MAX_BODY_KEY,
    error_middleware,
    request_guard,
    served_hosts,
)
from app.sim.api import CONTEXT, SimContext, routes, token_middleware
from app.sim.client import VentraClient
from app.sim.endpoints import EndpointRegistry
from app.sim.receiver import MAX_WEBHOOK_BYTES, Receiver
from app.sim.store import ReceiverStore

log = logging.getLogger("sim.server")


def resolve_token(configured: str | None, runtime_dir: Path) -> str:
    """Return the management token: configured, or generated once and kept."""
    if configured:
        return configured
    path = runtime_dir / "sim_token"
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = "vst_" + secrets.token_urlsafe(32)
    write_private_file(path, token)
    return token


@dataclass
class SimOptions:
    """What the VentraSim server needs from the configuration."""

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
        self.context = SimContext(
            sessions=sessions,
            registry=registry,
            receiver=Receiver(registry, ReceiverStore(sessions)),
            client=VentraClient(),
            token=self.token,
            default_connection=connection,
        )
        app = web.Application(
            client_max_size=max(MAX_BODY_BYTES, MAX_WEBHOOK_BYTES),
            middlewares=[error_middleware, request_guard(lambda: self._hosts), token_middleware],
        )
        app[CONTEXT] = self.context
        app[MAX_BODY_KEY] = MAX_BODY_BYTES
        app.add_routes(routes)
        return app

    async def start(self) -> str:
        app = self.build_app()
        assert self.context is not None
        await self.context.registry.load()
        await self.context.client.start()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._hosts.update(served_hosts(self.options.host, port) | self.options.extra_hosts)
        self.url = f"http://{self.options.host}:{port}"
        log.info("ventrasim listening url=%s", self.url)
        return self.url

    def set_default_connection(self, base_url: str, api_key: str) -> None:
        """Set the Ventra connection used when none is saved."""
        assert self.context is not None
        self.context.default_connection.update(base_url=base_url, api_key=api_key)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.context is not None:
            await self.context.client.close()
        if self.engine is not None:
            await self.engine.dispose()
        log.info("ventrasim stopped")
