"""Run coroutines on the qasync loop and report failures to the window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.ui.client import ApiFailure

log = logging.getLogger("ui")


class TaskRunner:
    """Start API calls without blocking Qt; failures go to ``on_error``."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self._tasks: set[asyncio.Future[Any]] = set()

    def run(
        self,
        coro: Awaitable[Any],
        on_done: Callable[[Any], None] | None = None,
        what: str = "request",
    ) -> asyncio.Future[Any]:
        async def guarded() -> None:
            try:
                result = await coro
            except ApiFailure as exc:
                log.info("ui call failed what=%s status=%s error=%s", what, exc.status, exc.code)
                self._on_error(f"{what} failed: {exc.message}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("ui call crashed what=%s", what)
                self._on_error(f"{what} failed: {type(exc).__name__}: {exc}")
                return
            if on_done is not None:
                on_done(result)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
