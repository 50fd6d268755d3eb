"""Ventra's HTTP API: routes, authentication and request parsing."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ENVIRONMENTS
from app.core.http import Handler, json_response, read_model, validation_message
from app.ventra import ledger, pix
from app.ventra.delivery import DeliveryWorker
from app.ventra.endpoints import EndpointService
from app.ventra.errors import NotFound, Unauthorized, ValidationFailed
from app.ventra.keys import ApiKeyStore
from app.ventra.orders import OrderService
from app.ventra.queries import EventQueries
from app.ventra.schemas import (
    ID_REGEX,
    BulkRetry,
    CreateOrder,
    EventQuery,
    OrderQuery,
    PixPay,
    Refund,
    RotateKey,
    TransactionQuery,
    UpdateEndpoint,
)

log = logging.getLogger("ventra.api")

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
QueryT = TypeVar("QueryT", bound=BaseModel)
ID_PATTERN = re.compile(ID_REGEX)


@dataclass
class VentraContext:
    """The services the handlers use."""

    sessions: async_sessionmaker[AsyncSession]
    orders: OrderService
    endpoints: EndpointService
    events: EventQueries
    worker: DeliveryWorker
    keys: ApiKeyStore
    openapi: dict[str, Any]


CONTEXT = web.AppKey("ventra_context", VentraContext)
routes = web.RouteTableDef()


def ctx(request: web.Request) -> VentraContext:
    return request.app[CONTEXT]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require the API key in ``x-api-key`` on every non-public route."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    keys = request.headers.getall("x-api-key", [])
    if len(keys) > 1:
        raise Unauthorized(
            f"the x-api-key header appears {len(keys)} times; send it once"
        )
    key = keys[0] if keys else None
    if key is None:
        raise Unauthorized(
            "the x-api-key header is missing; send the platform's API key"
        )
    if not ctx(request).keys.matches(key):
        log.info("request rejected reason=wrong_api_key path=%s", request.path)
        raise Unauthorized("the x-api-key header does not match the API key in force")
    return await handler(request)


def _env(value: str) -> str:
    if value not in ENVIRONMENTS:
        raise NotFound(
            f"environment {value!r} not found; use one of {', '.join(ENVIRONMENTS)}",
            env=value,
        )
    return value


def path_id(request: web.Request, name: str) -> str:
    """Return an id from the path; one that no id could match is not found."""
    value = request.match_info[name]
    if not ID_PATTERN.fullmatch(value):
        kind = name.removesuffix("_id")
        error = NotFound(f"{kind} {value[:80]!r} not found")
        error.details[name] = value[:80]
        raise error
    return value


def read_query(request: web.Request, model: type[QueryT]) -> QueryT:
    """Validate the query string into ``model``, naming the invalid parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        field, message = validation_message(exc)
        raise ValidationFailed(message, field=field) from None


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "service": "ventra"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(ctx(request).openapi)


@routes.post("/v1/orders")
async def create_order(request: web.Request) -> web.Response:
    body = await read_model(request, CreateOrder)
    order = await ctx(request).orders.create(
        amount=body.amount,
        description=body.description,
        env=body.env,
        expires_in=body.expires_in,
    )
    return json_response(order, status=201)


@routes.get("/v1/orders")
async def list_orders(request: web.Request) -> web.Response:
    query = read_query(request, OrderQuery)
    orders = await ctx(request).orders.list(
        env=query.env, status=query.status, limit=query.limit
    )
    return json_response({"data": orders})


@routes.get("/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    return json_response(await ctx(request).orders.get(path_id(request, "order_id")))


@routes.post("/v1/orders/{order_id}/pay")
async def pay_order(request: web.Request) -> web.Response:
    return json_response(await ctx(request).orders.pay(path_id(request, "order_id")))


@routes.post("/v1/orders/{order_id}/release")
async def release_order(request: web.Request) -> web.Response:
    return json_response(
        await ctx(request).orders.release(path_id(request, "order_id"))
    )


@routes.post("/v1/orders/{order_id}/refund")
async def refund_order(request: web.Request) -> web.Response:
    body = await read_model(request, Refund, optional=True)
    order = await ctx(request).orders.refund(
        path_id(request, "order_id"), body.amount, body.reason
    )
    return json_response(order)


@routes.post("/v1/pix/pay")
async def pay_by_br_code(request: web.Request) -> web.Response:
    body = await read_model(request, PixPay)
    try:
        code = pix.parse_br_code(body.br_code)
    except pix.BrCodeError as exc:
        raise ValidationFailed(
            str(exc), code="invalid_br_code", field="br_code"
        ) from None
    return json_response(await ctx(request).orders.pay_by_txid(code.txid, code.amount))


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    query = read_query(request, EventQuery)
    events = await ctx(request).events.list(
        order_id=query.order_id,
        event_type=query.type,
        env=query.env,
        limit=query.limit,
        before=query.starting_after,
    )
    return json_response({"data": events})


@routes.post("/v1/events/retry")
async def bulk_retry(request: web.Request) -> web.Response:
    body = await read_model(request, BulkRetry)
    queued = await ctx(request).worker.retry_failed(body.env, body.since)
    return json_response(
        {"env": body.env, "since": body.since.isoformat(), "queued": queued}
    )


@routes.get("/v1/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    return json_response(await ctx(request).events.get(path_id(request, "event_id")))


@routes.get("/v1/events/{event_id}/deliveries")
async def event_deliveries(request: web.Request) -> web.Response:
    result = await ctx(request).events.deliveries(path_id(request, "event_id"))
    return json_response(result)


@routes.post("/v1/events/{event_id}/retry")
async def retry_event(request: web.Request) -> web.Response:
    result = await ctx(request).worker.retry_now(path_id(request, "event_id"))
    return json_response(result)


@routes.get("/v1/webhook-endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    return json_response({"data": await ctx(request).endpoints.list()})


@routes.put("/v1/webhook-endpoints/{env}")
async def update_endpoint(request: web.Request) -> web.Response:
    env = _env(request.match_info["env"])
    body = await read_model(request, UpdateEndpoint)
    async with ctx(request).worker.endpoint_change(env):
        endpoint = await ctx(request).endpoints.update(
            env, url=body.url, secret=body.secret, enabled=body.enabled
        )
    return json_response(endpoint)


@routes.get("/v1/ledger/accounts")
async def ledger_accounts(request: web.Request) -> web.Response:
    async with ctx(request).sessions() as session:
        return json_response({"data": await ledger.account_balances(session)})


@routes.get("/v1/ledger/transactions")
async def ledger_transactions(request: web.Request) -> web.Response:
    query = read_query(request, TransactionQuery)
    async with ctx(request).sessions() as session:
        found = await ledger.transactions(session, query.order_id, limit=query.limit)
    return json_response({"data": found})


@routes.get("/v1/ledger/verify")
async def ledger_verify(request: web.Request) -> web.Response:
    async with ctx(request).sessions() as session:
        return json_response(await ledger.verify(session))


@routes.post("/settings/api-key")
async def rotate_api_key(request: web.Request) -> web.Response:
    body = await read_model(request, RotateKey, optional=True)
    key = ctx(request).keys.rotate(body.api_key)
    return json_response({"api_key": key})
