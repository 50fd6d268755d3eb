"""VentraSim's management API behind a bearer token, and the receiver's route.

Lists are newest first and paginated by cursor. Each page carries
``next_cursor``, which the next request passes as ``cursor``, and which is
None on the last page.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from app.core.config import ENVIRONMENTS
from app.core.http import Handler, json_response, read_model
from app.sim.client import VentraClient
from app.sim.endpoints import EndpointRegistry
from app.sim.errors import NotFound, Unauthorized, ValidationFailed
from app.sim.models import Attempt, MerchantOrder, ReceivedEvent
from app.sim.receiver import Receiver
from app.sim.schemas import EndpointUpdate

log = logging.getLogger("sim.api")

RECEIVER_PREFIX = "/api/webhooks/"
OPEN_PATHS = frozenset({"/api/health"})
MAX_QUERY_TEXT = 200


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
    """Return the services of the app serving ``request``."""
    return request.app[CONTEXT]


@web.middleware
async def token_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on management routes."""
    path = request.path
    if path in OPEN_PATHS or path.startswith(RECEIVER_PREFIX):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "the Authorization header is missing; send Authorization: Bearer <token>"
        )
    expected = ctx(request).token.encode("utf-8")
    # surrogatepass: aiohttp decodes odd header bytes to surrogates, which
    # must compare unequal rather than fail to encode.
    received = token.strip().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected, received):
        log.info("request rejected reason=wrong_token method=%s", request.method)
        raise Unauthorized("the bearer token does not match VentraSim's token")
    return await handler(request)


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    """Report that the server is up; open to anyone."""
    return json_response({"status": "ok", "service": "ventrasim"})


@routes.route("*", "/api/webhooks/ventra/{env}")
async def receive(request: web.Request) -> web.StreamResponse:
    """Store and respond to a webhook request, whatever its method."""
    return await ctx(request).receiver.handle(request)


def text_query(request: web.Request, name: str) -> str | None:
    """Read a text filter, rejecting characters PostgreSQL text cannot hold."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if len(raw) > MAX_QUERY_TEXT or not raw.isprintable():
        raise ValidationFailed(
            f"{name} must be at most {MAX_QUERY_TEXT} printable characters",
            field=name,
        )
    return raw


def path_text(request: web.Request, name: str) -> str:
    """Read a path segment, rejecting characters PostgreSQL text cannot hold."""
    raw = request.match_info[name]
    if len(raw) > MAX_QUERY_TEXT or not raw.isprintable():
        raise NotFound(f"{name} {raw[:40]!r} not found")
    return raw


def _filter_env(
    request: web.Request, query: Select[Any], column: InstrumentedAttribute[str]
) -> Select[Any]:
    """Narrow ``query`` to the request's ``env``, which must be a known one."""
    env = request.query.get("env")
    if env is None:
        return query
    if env not in ENVIRONMENTS:
        raise ValidationFailed(
            f"env={env[:40]!r} is unknown; use one of {', '.join(ENVIRONMENTS)}",
            field="env",
        )
    return query.where(column == env)


def _limit(request: web.Request, default: int = 50, maximum: int = 500) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdecimal() or not raw.isascii() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(
            f"limit={raw[:40]!r} is invalid; use a whole number from 1 to {maximum}",
            field="limit",
        )
    return int(raw)


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdecimal() or len(raw) > 18:
        raise ValidationFailed(
            f"{name}={raw[:40]!r} is invalid; use a whole number", field=name
        )
    return int(raw)


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ValidationFailed(
        f"{name}={raw[:40]!r} is invalid; use true or false", field=name
    )


def event_json(event: ReceivedEvent) -> dict[str, Any]:
    """Return the API view of a received event."""
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
    """Return the API view of an attempt; the body only when asked."""
    view: dict[str, Any] = {
        "id": attempt.id,
        "received_at": attempt.received_at.isoformat(),
        "method": attempt.method,
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
        "mode_options": attempt.mode_options,
        "status_code": attempt.status_code,
        "held_ms": attempt.held_ms,
        "outcome": attempt.outcome,
        "body_size": attempt.body_size,
        "headers": attempt.headers,
    }
    if with_body:
        view["body"] = attempt.body.decode("utf-8", "replace")
    return view


def _filter(
    request: web.Request,
    query: Select[Any],
    text_columns: Mapping[str, InstrumentedAttribute[Any]],
    signature_column: InstrumentedAttribute[bool],
) -> Select[Any]:
    """Narrow ``query`` by the text and ``signature_valid`` filters of the request."""
    for name, column in text_columns.items():
        value = text_query(request, name)
        if value is not None:
            query = query.where(column == value)
    valid = _bool_query(request, "signature_valid")
    if valid is not None:
        query = query.where(signature_column == valid)
    return query


@dataclass(frozen=True)
class Keyset:
    """The columns that page a table newest first.

    Rows are sorted by creation time, then by the text primary key, which
    breaks ties and is the cursor.
    """

    entity: type[Any]
    created: InstrumentedAttribute[datetime]
    key: InstrumentedAttribute[str]
    item_name: str


EVENT_KEYSET = Keyset(
    ReceivedEvent, ReceivedEvent.first_received_at, ReceivedEvent.event_id, "event"
)
ORDER_KEYSET = Keyset(
    MerchantOrder, MerchantOrder.first_seen_at, MerchantOrder.order_id, "order"
)


async def _keyset_page(
    request: web.Request, query: Select[Any], keyset: Keyset
) -> tuple[list[Any], str | None]:
    """Load the page of ``query`` after the request's cursor, and the next cursor."""
    limit = _limit(request)
    cursor = text_query(request, "cursor")
    async with ctx(request).sessions() as session:
        if cursor is not None:
            anchor = await session.get(keyset.entity, cursor)
            if anchor is None:
                raise ValidationFailed(
                    f"cursor={cursor[:40]!r} is not an {keyset.item_name} id from"
                    " next_cursor",
                    field="cursor",
                )
            # The creation time is set once on insert, so pages are stable
            # while later webhooks update the rows.
            created = getattr(anchor, keyset.created.key)
            key = getattr(anchor, keyset.key.key)
            query = query.where(
                (keyset.created < created)
                | ((keyset.created == created) & (keyset.key < key))
            )
        query = query.order_by(keyset.created.desc(), keyset.key.desc())
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    page = rows[:limit]
    next_cursor = getattr(page[-1], keyset.key.key) if len(rows) > limit else None
    return page, next_cursor


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    """List events, newest first received, filtered and paginated."""
    query = _filter_env(request, select(ReceivedEvent), ReceivedEvent.env)
    text_columns = {"type": ReceivedEvent.type, "order_id": ReceivedEvent.order_id}
    query = _filter(request, query, text_columns, ReceivedEvent.last_signature_valid)
    page, next_cursor = await _keyset_page(request, query, EVENT_KEYSET)
    return json_response(
        {"data": [event_json(e) for e in page], "next_cursor": next_cursor}
    )


@routes.get("/api/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    """Return one event with all its attempts, oldest first."""
    event_id = path_text(request, "event_id")
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
    """List attempts newest first by cursor, or oldest first after ``after_id``.

    ``after_id`` serves live views: it returns the attempts stored since the
    last one seen, oldest first.
    """
    text_columns = {
        "env": Attempt.env,
        "type": Attempt.event_type,
        "event_id": Attempt.event_id,
        "order_id": Attempt.order_id,
        "mode": Attempt.mode,
    }
    query = _filter(request, select(Attempt), text_columns, Attempt.signature_valid)
    limit = _limit(request, 100, 1000)
    after = _int_query(request, "after_id")
    cursor = _int_query(request, "cursor")
    if after is not None and cursor is not None:
        raise ValidationFailed("send after_id or cursor, not both", field="cursor")
    if after is not None:
        query = query.where(Attempt.id > after).order_by(Attempt.id)
    else:
        if cursor is not None:
            query = query.where(Attempt.id < cursor)
        query = query.order_by(Attempt.id.desc())
    async with ctx(request).sessions() as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = str(page[-1].id) if after is None else None
    return json_response(
        {"data": [attempt_json(a) for a in page], "next_cursor": next_cursor}
    )


@routes.get("/api/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    """List each environment's secret and failure mode."""
    return json_response({"data": ctx(request).registry.list()})


@routes.put("/api/endpoints/{env}")
async def update_endpoint(request: web.Request) -> web.Response:
    """Change an environment's secret or failure mode."""
    body = await read_model(request, EndpointUpdate)
    result = await ctx(request).registry.update(
        request.match_info["env"],
        secret=body.secret,
        mode=body.mode,
        options=body.options,
    )
    return json_response(result)


def order_json(order: MerchantOrder) -> dict[str, Any]:
    """Return the merchant's view of an order."""
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
        "first_seen_at": order.first_seen_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "snapshot": order.snapshot,
    }


@routes.get("/api/orders")
async def list_orders(request: web.Request) -> web.Response:
    """List the orders that validly signed events have named, newest first."""
    query = _filter_env(request, select(MerchantOrder), MerchantOrder.env)
    page, next_cursor = await _keyset_page(request, query, ORDER_KEYSET)
    return json_response(
        {"data": [order_json(o) for o in page], "next_cursor": next_cursor}
    )


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    """Return the merchant's view of one order."""
    order_id = path_text(request, "order_id")
    async with ctx(request).sessions() as session:
        order = await session.get(MerchantOrder, order_id)
    if order is None:
        raise NotFound(
            f"order {order_id!r} not found: no validly signed event has named it yet",
            order_id=order_id,
        )
    return json_response(order_json(order))
