"""The merchant's client of Ventra's API."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from app.sim.errors import UpstreamError

log = logging.getLogger("sim.client")


class VentraClient:
    """Call Ventra with a base URL and an API key, and pass its responses on."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP connection pool."""
        self._http = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
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
        """Send one request and return Ventra's status and JSON body.

        Raises UpstreamError (502) when Ventra cannot be reached, responds
        with a 5xx status, or responds with a body that is not JSON.
        """
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
            log.warning("ventra unreachable url=%s error=%s", url, type(exc).__name__)
            reason = str(exc) or type(exc).__name__
            raise UpstreamError(
                f"Ventra is unreachable at {url}: {reason}; check the connection's"
                " base URL and that Ventra is running",
                url=url,
            ) from None

        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            raise UpstreamError(
                f"Ventra at {url} responded HTTP {status} with a body that is not JSON",
                code="ventra_bad_response",
                url=url,
            ) from None
        if status >= 500:
            ventra_message = data.get("message") if isinstance(data, dict) else None
            log.warning("ventra failed url=%s status=%d", url, status)
            raise UpstreamError(
                f"Ventra at {url} responded HTTP {status}: {ventra_message or 'no message'}",
                code="ventra_error",
                url=url,
                ventra_status=status,
            )
        log.info("ventra called method=%s url=%s status=%d", method, url, status)
        return status, data
