"""VentraSim's management API and merchant actions, behind a bearer token."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ENVIRONMENTS
from app.core.http import Handler, json_response, read_model
from app.sim.client import VentraClient
from app.sim.endpoints import EndpointRegistry
from app.sim.errors import NotFound, SimError, Unauthorized, ValidationFailed
from app.sim.models import Attempt, MerchantOrder, ReceivedEvent, Setting
from app.sim.receiver import Receiver
from app.sim.schemas import Connection, DevOrder, DevRefund, EndpointUpdate

log = logging.getLogger("sim.api")

OPEN_PREFIXES = ("/api/webhooks/",)
OPEN_PATHS = frozenset({"/api/health"})


@dataclass
class SimContext:
    """The services the handlers use."""

    sessions: async_sessionmaker[AsyncSession]
    registry: EndpointRegistry
    receiver: Receiver
    client: VentraClient
    token: str
    default_connection: dict[str, str]


CONTEXT = web.AppKey("sim_context", SimContext)
routes = web.RouteTableDef()


def ctx(request: web.Request) -> SimContext:
    return request.app[CONTEXT]


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on management routes."""
    path = request.path
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "the Authorization header is missing; send Authorization: Bearer <token>"
        )
    expected = ctx(request).token.encode("utf-8")
    if not hmac.compare_digest(expected, token.strip().encode("utf-8", "surrogateescape")):
        log.info("request rejected reason=wrong_token path=%s", path)
        raise Unauthorized("the bearer token does not match VentraSim's token")
    return await handler(request)


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "service": "ventrasim"})


@routes.post("/api/webhooks/ventra/{env}")
async def receive(request: web.Request) -> web.StreamResponse:
    return await ctx(request).receiver.handle(request)


def _limit(request: web.Request, default: int = 50, maximum: int = 500) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(
            f"limit={raw!r} is invalid; use a whole number from 1 to {maximum}",
            field="limit",
        )
    return int(raw)


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationFailed(f"{name}={raw!r} is invalid; use a whole number", field=name)
    return int(raw)


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ValidationFailed(f"{name}={raw!r} is invalid; use true or false", field=name)


def event_json(event: ReceivedEvent) -> dict[str, Any]:
    delta = (event.last_received_at - event.first_received_at).total_seconds()
    return {
        "event_id": event.event_id,
        "type": event.type,
        "env": event.env,
        "order_id": event.order_id,
        "sequence": event.sequence,
        "attempt_count": event.attempt_count,
        "signature_valid": event.last_signature_valid,
        "payload_verified": event.payload_verified,
        "first_received_at": event.first_received_at.isoformat(),
        "last_received_at": event.last_received_at.isoformat(),
        "delta_seconds": round(delta, 3),
        "payload": event.payload,
    }


def attempt_json(attempt: Attempt, with_body: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": attempt.id,
        "received_at": attempt.received_at.isoformat(),
        "env": attempt.env,
        "event_id": attempt.event_id,
        "event_type": attempt.event_type,
        "order_id": attempt.order_id,
        "delivery_attempt": attempt.delivery_attempt,
        "signature_valid": attempt.signature_valid,
        "signature_error": attempt.signature_error,
        "standard_signature_valid": attempt.standard_signature_valid,
        "standard_signature_error": attempt.standard_signature_error,
        "parse_error": attempt.parse_error,
        "mode": attempt.mode,
        "status_code": attempt.status_code,
        "held_ms": attempt.held_ms,
        "outcome": attempt.outcome,
        "body_size": attempt.body_size,
        "headers": attempt.headers,
    }
    if with_body:
        body["body"] = attempt.body.decode("utf-8", "replace")
    return body


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    query = select(ReceivedEvent)
    env = request.query.get("env")
    if env is not None:
        query = query.where(ReceivedEvent.env == env)
    if "type" in request.query:
        query = query.where(ReceivedEvent.type == request.query["type"])
    if "order_id" in request.query:
        query = query.where(ReceivedEvent.order_id == request.query["order_id"])
    valid = _bool_query(request, "signature_valid")
    if valid is not None:
        query = query.where(ReceivedEvent.last_signature_valid == valid)
    limit = _limit(request)
    async with ctx(request).sessions() as session:
        cursor = request.query.get("cursor")
        if cursor:
            anchor = await session.get(ReceivedEvent, cursor)
            if anchor is None:
                raise ValidationFailed(f"cursor={cursor!r} is not a known event id", field="cursor")
            query = query.where(
                (ReceivedEvent.last_received_at < anchor.last_received_at)
                | (
                    (ReceivedEvent.last_received_at == anchor.last_received_at)
                    & (ReceivedEvent.event_id > anchor.event_id)
                )
            )
        query = query.order_by(
            ReceivedEvent.last_received_at.desc(), ReceivedEvent.event_id
        ).limit(limit + 1)
        rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response(
        {
            "data": [event_json(e) for e in rows],
            "next_cursor": rows[-1].event_id if more else None,
        }
    )


@routes.get("/api/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    async with ctx(request).sessions() as session:
        event = await session.get(ReceivedEvent, event_id)
        if event is None:
            raise NotFound(f"event {event_id!r} not found", event_id=event_id)
        attempts = await session.scalars(
            select(Attempt).where(Attempt.event_id == event_id).order_by(Attempt.id)
        )
        return json_response(
            {**event_json(event), "attempts": [attempt_json(a, True) for a in attempts]}
        )


@routes.get("/api/attempts")
async def list_attempts(request: web.Request) -> web.Response:
    query = select(Attempt)
    after = _int_query(request, "after_id")
    if after is not None:
        query = query.where(Attempt.id > after).order_by(Attempt.id)
    else:
        query = query.order_by(Attempt.id.desc())
    for name in ("env", "event_id", "order_id"):
        if name in request.query:
            query = query.where(getattr(Attempt, name) == request.query[name])
    valid = _bool_query(request, "signature_valid")
    if valid is not None:
        query = query.where(Attempt.signature_valid == valid)
    before = _int_query(request, "before_id")
    if before is not None:
        query = query.where(Attempt.id < before)
    limit = _limit(request, 100, 1000)
    async with ctx(request).sessions() as session:
        rows = list((await session.scalars(query.limit(limit))).all())
    return json_response({"data": [attempt_json(a) for a in rows]})


@routes.get("/api/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    return json_response({"data": ctx(request).registry.list()})


@routes.put("/api/endpoints/{env}")
async def update_endpoint(request: web.Request) -> web.Response:
    body = await read_model(request, EndpointUpdate)
    result = await ctx(request).registry.update(
        request.match_info["env"],
        secret=body.secret,
        mode=body.mode,
        options=body.options,
    )
    return json_response(result)


@routes.get("/api/orders")
async def list_orders(request: web.Request) -> web.Response:
    query = select(MerchantOrder).order_by(MerchantOrder.updated_at.desc())
    if "env" in request.query:
        query = query.where(MerchantOrder.env == request.query["env"])
    async with ctx(request).sessions() as session:
        rows = (await session.scalars(query.limit(_limit(request)))).all()
    return json_response({"data": [order_json(o) for o in rows]})


def order_json(order: MerchantOrder) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "env": order.env,
        "status": order.status,
        "amount": order.amount,
        "held_amount": order.held_amount,
        "released_amount": order.released_amount,
        "refunded_amount": order.refunded_amount,
        "sequence": order.sequence,
        "last_event_id": order.last_event_id,
        "last_event_type": order.last_event_type,
        "updated_at": order.updated_at.isoformat(),
    }


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    async with ctx(request).sessions() as session:
        order = await session.get(MerchantOrder, order_id)
    if order is None:
        raise NotFound(
            f"order {order_id!r} not found: no validly signed event has named it yet",
            order_id=order_id,
        )
    return json_response(order_json(order))


async def _connection(request: web.Request) -> dict[str, str]:
    async with ctx(request).sessions() as session:
        saved = await session.get(Setting, "connection")
    connection = dict(ctx(request).default_connection)
    if saved is not None:
        connection.update(saved.value)
    return connection


@routes.get("/api/connection")
async def get_connection(request: web.Request) -> web.Response:
    return json_response(await _connection(request))


@routes.put("/api/connection")
async def put_connection(request: web.Request) -> web.Response:
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
    return json_response(await _connection(request))


async def _call_ventra(
    request: web.Request, method: str, path: str, body: dict[str, Any] | None = None
) -> web.Response:
    connection = await _connection(request)
    base_url = request.headers.get("x-api-base-url") or connection.get("base_url")
    api_key = request.headers.get("x-api-key") or connection.get("api_key")
    if not base_url or not api_key:
        raise SimError(
            "no Ventra connection is saved; PUT /api/connection with base_url and"
            " api_key, or send x-api-base-url and x-api-key",
            code="connection_missing",
            http_status=409,
        )
    status, data = await ctx(request).client.call(
        method, base_url, api_key, path, body,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return json_response(data, status=status)


@routes.post("/api/dev/orders")
async def dev_create(request: web.Request) -> web.Response:
    body = await read_model(request, DevOrder)
    return await _call_ventra(request, "POST", "/v1/orders", body.model_dump(exclude_none=True))


@routes.post("/api/dev/orders/{order_id}/{action:pay|release}")
async def dev_action(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    action = request.match_info["action"]
    return await _call_ventra(request, "POST", f"/v1/orders/{order_id}/{action}")


@routes.post("/api/dev/orders/{order_id}/refund")
async def dev_refund(request: web.Request) -> web.Response:
    body = await read_model(request, DevRefund, optional=True)
    order_id = request.match_info["order_id"]
    return await _call_ventra(
        request, "POST", f"/v1/orders/{order_id}/refund", body.model_dump(exclude_none=True)
    )


@routes.post("/api/events/{event_id}/retry")
async def retry_event(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    return await _call_ventra(request, "POST", f"/v1/events/{event_id}/retry")


def known_env(env: str) -> bool:
    return env in ENVIRONMENTS
