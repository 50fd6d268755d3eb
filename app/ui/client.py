"""Asynchronous client of both APIs for the window, on the qasync loop."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("ui")


@dataclass(frozen=True)
class Endpoints:
    """Addresses of the servers and the window's credentials."""

    ventra_url: str
    sim_url: str
    api_key: str
    sim_token: str
    database: str


class ApiFailure(Exception):
    """An API call that failed, with a message fit for the status bar."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ApiClient:
    """Call Ventra and VentraSim over HTTP; failures become ``ApiFailure``."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30), trust_env=False
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _request(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> Any:
        try:
            async with self._session().request(
                method, url, json=body, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiFailure(f"{method} {url} failed: {exc or type(exc).__name__}") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise ApiFailure(f"{method} {url} returned HTTP {status} without a JSON body", status) from None
        if status >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            code = data.get("error") if isinstance(data, dict) else None
            raise ApiFailure(message or f"HTTP {status}", status, code)
        return data

    async def ventra(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"x-api-key": self.endpoints.api_key}
        return await self._request(method, self.endpoints.ventra_url + path, headers, body)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.endpoints.sim_token}"}
        return await self._request(method, self.endpoints.sim_url + path, headers, body)

    async def create_and_pay(self, amount: int, env: str, description: str | None) -> dict[str, Any]:
        """Create an order through VentraSim's merchant actions, then pay it."""
        body: dict[str, Any] = {"amount": amount, "env": env}
        if description:
            body["description"] = description
        order = await self.sim("POST", "/api/dev/orders", body)
        return await self.sim("POST", f"/api/dev/orders/{order['id']}/pay")

    def set_api_key(self, key: str) -> None:
        self.endpoints = Endpoints(
            self.endpoints.ventra_url,
            self.endpoints.sim_url,
            key,
            self.endpoints.sim_token,
            self.endpoints.database,
        )
