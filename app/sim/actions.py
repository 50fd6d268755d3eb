"""Merchant actions: calls to Ventra's API with the saved connection.

Each action uses the ``x-api-base-url`` and ``x-api-key`` headers of the
request when present, else the connection saved by ``PUT /api/connection``,
else the one the app configured at start-up. Ventra's 4xx responses reach
the caller as they are, with Ventra's ``error`` code and ``message``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from app.core.http import json_response, read_model
from app.sim.api import ctx, path_text
from app.sim.errors import SimError, ValidationFailed
from app.sim.models import Setting
from app.sim.schemas import Connection, DevOrder, DevRefund

log = logging.getLogger("sim.actions")

routes = web.RouteTableDef()


async def saved_connection(request: web.Request) -> dict[str, str]:
    """Return the saved connection over the one configured at start-up."""
    async with ctx(request).sessions() as session:
        saved = await session.get(Setting, "connection")
    connection = dict(ctx(request).default_connection)
    if saved is not None:
        connection.update(saved.value)
    return connection


@routes.get("/api/connection")
async def get_connection(request: web.Request) -> web.Response:
    """Return the connection to Ventra in force."""
    return json_response(await saved_connection(request))


@routes.put("/api/connection")
async def put_connection(request: web.Request) -> web.Response:
    """Save the base URL or API key used to call Ventra."""
    body = await read_model(request, Connection)
    value = body.model_dump(exclude_none=True)
    async with ctx(request).sessions() as session:
        saved = await session.get(Setting, "connection", with_for_update=True)
        if saved is None:
            session.add(Setting(key="connection", value=value))
        else:
            saved.value = {**saved.value, **value}
        await session.commit()
    log.info("connection saved base_url=%s", value.get("base_url"))
    return json_response(await saved_connection(request))


def _base_url(raw: str) -> str:
    """Check that a base URL is an absolute http or https URL."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationFailed(
            f"Ventra base URL {raw[:80]!r} is invalid; use http://HOST:PORT",
            field="x-api-base-url",
        )
    return raw


async def call_ventra(
    request: web.Request, method: str, path: str, body: dict[str, Any] | None = None
) -> web.Response:
    """Forward one call to Ventra and return its response to the caller."""
    connection = await saved_connection(request)
    base_url = request.headers.get("x-api-base-url") or connection.get("base_url")
    api_key = request.headers.get("x-api-key") or connection.get("api_key")
    if not base_url or not api_key:
        raise SimError(
            "no Ventra connection is saved; PUT /api/connection with base_url and"
            " api_key, or send x-api-base-url and x-api-key",
            code="connection_missing",
            http_status=409,
        )
    idempotency_key = request.headers.get("Idempotency-Key")
    for name, value in (("x-api-key", api_key), ("Idempotency-Key", idempotency_key)):
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValidationFailed(
                f"{name} must be printable ASCII to be sent on to Ventra", field=name
            )
    status, data = await ctx(request).client.call(
        method,
        _base_url(base_url),
        api_key,
        path,
        body,
        idempotency_key=idempotency_key,
    )
    return json_response(data, status=status)


def _segment(request: web.Request, name: str) -> str:
    """Return a path parameter quoted for use inside Ventra's URL."""
    return quote(path_text(request, name), safe="")


@routes.post("/api/dev/orders")
async def dev_create(request: web.Request) -> web.Response:
    """Create an order on Ventra."""
    body = await read_model(request, DevOrder)
    return await call_ventra(
        request, "POST", "/v1/orders", body.model_dump(exclude_none=True)
    )


@routes.post("/api/dev/orders/{order_id}/{action:pay|release}")
async def dev_action(request: web.Request) -> web.Response:
    """Simulate the Pix payment of an order, or release it."""
    order_id = _segment(request, "order_id")
    action = request.match_info["action"]
    return await call_ventra(request, "POST", f"/v1/orders/{order_id}/{action}")


@routes.post("/api/dev/orders/{order_id}/refund")
async def dev_refund(request: web.Request) -> web.Response:
    """Refund an order in full, or the amount given."""
    body = await read_model(request, DevRefund, optional=True)
    order_id = _segment(request, "order_id")
    return await call_ventra(
        request,
        "POST",
        f"/v1/orders/{order_id}/refund",
        body.model_dump(exclude_none=True),
    )


@routes.post("/api/events/{event_id}/retry")
async def retry_event(request: web.Request) -> web.Response:
    """Ask Ventra to send an event again now, signed with its current secret."""
    event_id = _segment(request, "event_id")
    return await call_ventra(request, "POST", f"/v1/events/{event_id}/retry")
