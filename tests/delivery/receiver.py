"""A webhook receiver for delivery tests: a real aiohttp server in a thread.

It records every request (method, path, headers, raw body) and responds
with whatever the test's ``respond`` coroutine returns.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Received:
    """One request as it arrived on the wire."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def attempt(self) -> int:
        return int(self.headers.get("x-ventra-attempt", "0"))

    def event(self) -> dict:
        return json.loads(self.body)


Respond = Callable[[Received], Awaitable[web.StreamResponse]]


async def answer_ok(request: Received) -> web.StreamResponse:
    return web.Response(status=200)


async def gone_for_4100(request: Received) -> web.StreamResponse:
    """Return 410 for events of orders of R$ 41,00 and 500 for the rest."""
    gone = request.event()["data"]["amount"] == 4100
    return web.Response(status=410 if gone else 500)


class Receiver:
    """Serve on 127.0.0.1, a free port, on a loop of its own."""

    def __init__(self, respond: Respond = answer_ok) -> None:
        self.respond = respond
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a sender that gives up cancels the handler,
        # as a real server would notice the closed connection.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            at=time.monotonic(),
        )
        with self._lock:
            self._received.append(received)
        return await self.respond(received)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[Received]:
        """Return every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def posts(self, event_id: str | None = None) -> list[Received]:
        """Return the POSTs so far, of one event when ``event_id`` is given."""
        return [
            r
            for r in self.received()
            if r.method == "POST" and (event_id is None or r.event_id == event_id)
        ]

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            # Handlers still waiting are cancelled, and the loop runs on
            # briefly so closed transports get their connection_lost. A
            # transport left open would warn in whichever test runs when
            # the garbage collector finds it.
            waiting = [
                t for t in asyncio.all_tasks() if t is not asyncio.current_task()
            ]
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
