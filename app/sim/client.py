"""The merchant's client of Ventra's API."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from app.sim.errors import UpstreamError

log = logging.getLogger("sim.client")


class VentraClient:
    """Call Ventra with a base URL and an API key; pass its errors on."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(
        self,
        method: str,
        base_url: str,
        api_key: str,
        path: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, Any]:
        """Send one request; Ventra's 4xx come back as ``(status, body)``."""
        assert self._http is not None
        url = base_url.rstrip("/") + path
        headers = {"x-api-key": api_key}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async with self._http.request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("ventra unreachable url=%s error=%s", url, exc)
            raise UpstreamError(
                f"Ventra is unreachable at {url}: {type(exc).__name__} {exc};"
                " check the connection's base URL and that Ventra is running",
                url=url,
            ) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise UpstreamError(
                f"Ventra at {url} answered HTTP {status} with a body that is not JSON",
                code="ventra_bad_response",
                url=url,
            ) from None
        return status, data
