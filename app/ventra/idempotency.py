"""``Idempotency-Key`` on POSTs: a repeated request gets the first response.

The first request with a key claims it by inserting a row with no status
yet, in a transaction of its own, and fills in the response when the
handler is done. A second request with the same key and body waits for
that response and returns it, so two requests that arrive at once still
cause one effect. The same key with another body is rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.http import ApiError, Handler, json_response, read_body
from app.ventra.api import CONTEXT
from app.ventra.errors import IdempotencyMismatch, ValidationFailed
from app.ventra.models import IdempotencyRecord

log = logging.getLogger("ventra.api")

# Statuses of requests rejected before the operation ran; their keys are freed.
NOT_STORED = frozenset({400, 401, 413, 415, 422})

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_REGEX = rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$"
KEY_PATTERN = re.compile(KEY_REGEX)
# How long a second request waits for the first one's response.
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.02
# A claim with no response after this long was left by a crashed process.
ABANDONED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class StoredResponse:
    """The first response to a key: status and exact body bytes."""

    status: int
    body: bytes


class IdempotencyInProgress(ApiError):
    """The first request with this key is still running after the wait."""

    status = 409
    code = "idempotency_key_in_use"


def _check_key(key: str) -> None:
    if not KEY_PATTERN.fullmatch(key):
        raise ValidationFailed(
            f"{HEADER} {key[:40]!r} is invalid; use 1 to {MAX_KEY_LENGTH}"
            " visible ASCII characters without spaces, such as a UUID",
            field=HEADER,
        )


def _match_key(key: str, method: str, path: str) -> ColumnElement[bool]:
    """Return the WHERE clause of the row of ``key`` on one route."""
    return and_(
        IdempotencyRecord.key == key,
        IdempotencyRecord.method == method,
        IdempotencyRecord.path == path,
    )


def _match_open_claim(key: str, method: str, path: str) -> ColumnElement[bool]:
    """Return the WHERE clause of that row while it is a claim with no response.

    Claiming and releasing delete only such rows, so a stored response stays.
    """
    return and_(_match_key(key, method, path), IdempotencyRecord.status.is_(None))


def _replay(stored: StoredResponse) -> web.Response:
    response = web.Response(
        body=stored.body, status=stored.status, content_type="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


class IdempotencyStore:
    """Claims, completes and reads the rows of ``idempotency_keys``.

    NOTE: rows are kept forever; nothing purges old keys yet, as providers
    do after a day or so.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def claim(self, key: str, method: str, path: str, digest: str) -> bool:
        """Insert the claim row; return False when the key already has one."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            # A claim that never got a response was left by a crash: drop it.
            await session.execute(
                delete(IdempotencyRecord).where(
                    _match_open_claim(key, method, path),
                    IdempotencyRecord.created_at < now - ABANDONED_AFTER,
                )
            )
            result = await session.execute(
                insert(IdempotencyRecord)
                .values(
                    key=key,
                    method=method,
                    path=path,
                    request_hash=digest,
                    status=None,
                    response_body=None,
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(IdempotencyRecord.key)
            )
            claimed = result.first() is not None
            await session.commit()
        return claimed

    async def complete(
        self, key: str, method: str, path: str, stored: StoredResponse
    ) -> None:
        """Store the response of a claimed key."""
        async with self._sessions() as session:
            await session.execute(
                update(IdempotencyRecord)
                .where(_match_key(key, method, path))
                .values(status=stored.status, response_body=stored.body)
            )
            await session.commit()

    async def release(self, key: str, method: str, path: str) -> None:
        """Drop a claim whose request failed, so the client can try again."""
        async with self._sessions() as session:
            await session.execute(
                delete(IdempotencyRecord).where(_match_open_claim(key, method, path))
            )
            await session.commit()

    async def find(self, key: str, method: str, path: str) -> IdempotencyRecord | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(IdempotencyRecord).where(_match_key(key, method, path))
            )

    async def wait_for_response(
        self, key: str, method: str, path: str, digest: str
    ) -> StoredResponse | None:
        """Poll until the first request's response is stored.

        Returns None when the claim disappeared (the first request failed),
        so the caller can claim the key itself.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            record = await self.find(key, method, path)
            if record is None:
                return None
            if record.request_hash != digest:
                raise IdempotencyMismatch(
                    f"{HEADER} {key!r} was already used with another request body"
                    f" on {method} {path}; use a new key for a new request",
                    idempotency_key=key,
                )
            if record.status is not None:
                return StoredResponse(record.status, record.response_body or b"")
            if time.monotonic() > deadline:
                raise IdempotencyInProgress(
                    f"the first request with {HEADER} {key!r} is still running;"
                    " retry in a few seconds",
                    idempotency_key=key,
                )
            await asyncio.sleep(POLL_SECONDS)


async def _run_handler(request: web.Request, handler: Handler) -> StoredResponse:
    """Run the handler, turning a reported error into the response to store."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_response(exc.to_json(), status=exc.status)
    if not isinstance(response, web.Response) or response.body is None:
        raise TypeError(f"{request.path} did not return a JSON response body")
    return StoredResponse(response.status, bytes(response.body))  # type: ignore[arg-type]


@web.middleware
async def idempotency_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Honour ``Idempotency-Key`` on every POST to a known route.

    A response is kept only when the request got as far as the operation:
    a request rejected for its form (400, 401, 413, 415, 422) or a server
    error frees the key, so the corrected request can use it again.
    """
    key = request.headers.get(HEADER)
    if (
        request.method != "POST"
        or key is None
        or request.match_info.http_exception is not None
    ):
        return await handler(request)
    _check_key(key)
    store = IdempotencyStore(request.app[CONTEXT].sessions)
    body = await read_body(request)
    # The method and path are part of the row's key, so the body alone
    # decides whether a repeated key is the same request.
    digest = hashlib.sha256(body).hexdigest()
    method, path = request.method, request.path

    while not await store.claim(key, method, path, digest):
        stored = await store.wait_for_response(key, method, path, digest)
        if stored is not None:
            log.info("idempotent replay key=%s path=%s", key, path)
            return _replay(stored)

    try:
        stored = await _run_handler(request, handler)
    except BaseException:
        await asyncio.shield(store.release(key, method, path))
        raise
    if stored.status >= 500 or stored.status in NOT_STORED:
        await store.release(key, method, path)
    else:
        await store.complete(key, method, path, stored)
    return web.Response(
        body=stored.body, status=stored.status, content_type="application/json"
    )
