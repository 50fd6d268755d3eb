"""The webhook receiver: read the raw body once, verify, respond by mode, record.

Every request that reaches the handler is stored as exactly one attempt,
whatever its method, environment, headers or body. Requests that aiohttp's
HTTP parser rejects (a malformed request line, a control character in a
header) get a 400 from aiohttp itself and never reach it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from app.core.config import ENVIRONMENTS
from app.core.http import foreign_request_error
from app.sim.endpoints import EndpointRegistry
from app.sim.envelope import ParsedEvent, parse_event
from app.sim.modes import ModeSettings, flaky_fails
from app.sim.store import AttemptRecord, ReceiverStore
from app.sim.verification import Verdict, verify

log = logging.getLogger("sim.receiver")

MAX_WEBHOOK_BYTES = 256 * 1024
# Past the limit, the rest of a body is read and dropped up to this many
# bytes, so the sender can read the 413; beyond it the connection is closed.
MAX_DRAIN_BYTES = 8 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
HOLD_POLL_SECONDS = 0.05
ATTEMPT_HEADER = re.compile(r"[0-9]{1,9}")
NOT_AN_ENV = "n/a"


@dataclass
class Body:
    """The bytes read from a request and why reading stopped early, if it did."""

    data: bytes = b""
    size: int = 0
    problem: str | None = None
    complete: bool = True


@dataclass
class Decision:
    """The status, outcome, JSON body and headers chosen for a request."""

    status: int | None
    outcome: str
    payload: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def printable(text: str, limit: int = 64) -> str:
    """Return ``text`` cut to ``limit`` characters, control characters escaped.

    PostgreSQL text rejects NUL, and log lines must stay one line each.
    """
    cut = text[:limit]
    if cut.isprintable():
        return cut
    return cut.encode("unicode_escape", "backslashreplace").decode("ascii")


def headers_json(request: web.Request) -> str:
    """Serialize every header as received, in order, keeping repeated names.

    Names are decoded as Latin-1 and values as UTF-8, so no byte is lost;
    an invalid UTF-8 byte in a value is written as ``\\xNN``.
    """
    pairs = [
        [
            name.decode("latin-1"),
            value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00"),
        ]
        for name, value in request.raw_headers
    ]
    return json.dumps(pairs)


async def read_body(request: web.Request) -> Body:
    """Read the raw body once, up to the size limit.

    ``StreamReader.read(n)`` returns what has arrived, up to ``n`` bytes, so
    the body is read in a loop until the end of the payload.
    """
    body = Body()
    chunks: list[bytes] = []
    try:
        while chunk := await request.content.read(READ_CHUNK_BYTES):
            kept = max(0, min(len(chunk), MAX_WEBHOOK_BYTES - body.size))
            chunks.append(chunk[:kept])
            body.size += len(chunk)
            if body.size > MAX_WEBHOOK_BYTES:
                body.problem = "too_large"
                body.complete = await _drain(request, body)
                break
    except RequestPayloadError as exc:
        body.problem = "bad_framing"
        log.debug("webhook body unreadable error=%s", exc)
    except OSError:
        # aiohttp sets ConnectionResetError on the payload when the peer hangs up.
        body.problem = "disconnected"
        body.complete = False
    body.data = b"".join(chunks)
    return body


async def _drain(request: web.Request, body: Body) -> bool:
    """Read and drop the rest of a body over the limit; True if it ended."""
    while body.size <= MAX_WEBHOOK_BYTES + MAX_DRAIN_BYTES:
        chunk = await request.content.read(READ_CHUNK_BYTES)
        if not chunk:
            return True
        body.size += len(chunk)
    return False


def _error(status: int, outcome: str, code: str, message: str) -> Decision:
    return Decision(status, outcome, {"error": code, "message": message})


def _foreign(request: web.Request, hosts: set[str]) -> Decision | None:
    """Decide the response to another site's request as the other routes do."""
    rejection = foreign_request_error(request, hosts)
    if rejection is None:
        return None
    assert isinstance(rejection.body, bytes)
    payload = json.loads(rejection.body)
    return Decision(rejection.status, payload["error"], payload)


def _request_error(
    request: web.Request, env: str, body: Body, hosts: set[str]
) -> Decision | None:
    """Decide the response to a request that is not a delivery, before any mode."""
    foreign = _foreign(request, hosts)
    if foreign is not None:
        return foreign
    if request.method != "POST":
        decision = _error(
            405,
            "method_not_allowed",
            "method_not_allowed",
            f"{request.method} is not allowed on the receiver; Ventra sends POST",
        )
        decision.headers["Allow"] = "POST"
        return decision
    if env not in ENVIRONMENTS:
        return _error(
            404,
            "unknown_env",
            "unknown_environment",
            f"environment {printable(env)!r} not found; use one of"
            f" {', '.join(ENVIRONMENTS)}",
        )
    if body.problem == "too_large":
        return _error(
            413,
            "too_large",
            "payload_too_large",
            f"the body is over the limit of {MAX_WEBHOOK_BYTES} bytes",
        )
    if body.problem == "bad_framing":
        return _error(
            400,
            "bad_framing",
            "bad_request",
            "the body could not be read as sent: its framing or its"
            " Content-Encoding is invalid; send the event JSON uncompressed",
        )
    return None


def _mode_decision(mode: ModeSettings) -> Decision | None:
    """Decide the response of a failure mode that ignores the request's content."""
    decision = None
    if mode.mode == "offline":
        decision = _error(
            503, "offline", "offline", "the receiver is offline (mode offline)"
        )
    elif mode.mode == "flaky" and flaky_fails(mode.flaky_percent):
        decision = _error(
            503,
            "flaky_failure",
            "flaky",
            f"flaky mode failed this request ({mode.flaky_percent}% fail)",
        )
    elif mode.mode == "status":
        code = mode.fixed_status
        decision = _error(
            code, f"fixed_status_{code}", "fixed_status", f"status mode returns {code}"
        )
    if decision is None or mode.retry_after is None:
        return decision
    if decision.status is not None and decision.status >= 300:
        decision.headers["Retry-After"] = str(mode.retry_after)
    return decision


def _content_decision(
    verdict: Verdict, event: ParsedEvent | None, error: str | None, env: str
) -> Decision:
    """Decide the response by signature and content, as a merchant's handler would."""
    if not verdict.valid:
        return _error(
            401,
            "signature_invalid",
            "invalid_signature",
            verdict.error or "the signature is invalid",
        )
    if event is None:
        return _error(
            400, "unparsable", "invalid_event", error or "the body is not an event"
        )
    if event.env and event.env != env:
        # A secret shared by two environments must not let an event of one
        # move an order's view in the other.
        return _error(
            400,
            "env_mismatch",
            "env_mismatch",
            f"the event is for environment {event.env!r} but was sent to the"
            f" {env!r} endpoint; check the endpoint URL in Ventra",
        )
    return Decision(200, "accepted", {"received": True})


class Receiver:
    """Handle every request to ``/api/webhooks/ventra/{env}``."""

    def __init__(
        self,
        registry: EndpointRegistry,
        store: ReceiverStore,
        hosts: Callable[[], set[str]],
        on_attempt: Callable[[int], None] | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._hosts = hosts
        self._on_attempt = on_attempt
        # Set when the server stops, so held requests end at once.
        self.stopping = asyncio.Event()
        # Requests held by timeout mode right now.
        self.holding = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Read, verify, decide by mode, store one attempt, then respond."""
        started = time.monotonic()
        received_at = datetime.now(UTC)
        env = request.match_info["env"]
        known_env = env in ENVIRONMENTS
        body = await read_body(request)
        mode = self._registry.mode(env) if known_env else ModeSettings()

        secret = self._registry.secret(env) if known_env else None
        verdict = verify(secret, request, body.data)
        event, parse_error = (None, None)
        if body.problem is None:
            event, parse_error = parse_event(body.data)

        decision = _request_error(request, env, body, self._hosts())
        if decision is None and not body.complete:
            decision = Decision(None, "sender_disconnected")
        if decision is None:
            decision = await self._decide_by_mode(
                request, env, mode, verdict, event, parse_error
            )

        record = AttemptRecord(
            received_at=received_at,
            method=printable(request.method, 16),
            env=printable(env),
            known_env=known_env,
            headers_json=headers_json(request),
            body=body.data,
            body_size=body.size,
            event=event,
            delivery_attempt=_attempt_number(request.headers.get("X-Ventra-Attempt")),
            signature_valid=verdict.valid,
            signature_error=verdict.error,
            standard_signature_valid=verdict.standard_valid,
            standard_signature_error=verdict.standard_error,
            parse_error=parse_error,
            mode=mode.mode if known_env else NOT_AN_ENV,
            mode_options=mode.summary if known_env else {},
            status_code=decision.status,
            held_ms=int((time.monotonic() - started) * 1000),
            outcome=decision.outcome,
            apply_to_view=decision.status is not None
            and 200 <= decision.status < 300
            and verdict.valid,
        )
        attempt_id, is_new = await self._save(record)
        return self._respond(
            request, decision, attempt_id, event, is_new, body.complete
        )

    async def _decide_by_mode(
        self,
        request: web.Request,
        env: str,
        mode: ModeSettings,
        verdict: Verdict,
        event: ParsedEvent | None,
        parse_error: str | None,
    ) -> Decision:
        if mode.mode == "timeout":
            self.holding += 1
            try:
                return await self._hold(request, mode.timeout_cap)
            finally:
                self.holding -= 1
        decision = _mode_decision(mode)
        if decision is not None:
            return decision
        if mode.mode == "slow":
            await self._sleep(mode.slow_ms / 1000)
        return _content_decision(verdict, event, parse_error, env)

    async def _hold(self, request: web.Request, cap: float) -> Decision:
        """Hold the request until the sender hangs up or ``cap`` seconds pass."""
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return Decision(None, "sender_gave_up")
            if await self._sleep(HOLD_POLL_SECONDS):
                return _error(
                    503, "server_stopping", "stopping", "the receiver is stopping"
                )
        return _error(
            504,
            "timeout_cap_reached",
            "timeout_mode",
            f"timeout mode held the request for its cap of {cap:g} s",
        )

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, ending early when the server stops; True if it stopped."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _save(self, record: AttemptRecord) -> tuple[int, bool]:
        # Shielded: a sender that hangs up while the row is written must not
        # leave the request unrecorded.
        attempt_id, is_new = await asyncio.shield(self._store.save(record))
        event = record.event
        log.info(
            "webhook received attempt_id=%d env=%s event_id=%s signature_valid=%s"
            " mode=%s status=%s outcome=%s held_ms=%d",
            attempt_id,
            record.env,
            event.event_id if event else None,
            record.signature_valid,
            record.mode,
            record.status_code,
            record.outcome,
            record.held_ms,
        )
        if self._on_attempt is not None:
            self._on_attempt(attempt_id)
        return attempt_id, is_new

    def _respond(
        self,
        request: web.Request,
        decision: Decision,
        attempt_id: int,
        event: ParsedEvent | None,
        is_new: bool,
        complete: bool,
    ) -> web.StreamResponse:
        if decision.status is None:
            # The sender has hung up, so this status is never sent.
            response = web.Response(status=499)
            response.force_close()
            return response
        payload = {**decision.payload, "attempt_id": attempt_id}
        if event is not None and decision.status < 300:
            payload["event_id"] = event.event_id
            payload["duplicate"] = not is_new
        response = web.Response(
            body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            status=decision.status,
            content_type="application/json",
            headers=decision.headers,
        )
        if not complete:
            response.force_close()
        return response


def _attempt_number(value: str | None) -> int | None:
    if value is None or not ATTEMPT_HEADER.fullmatch(value):
        return None
    return int(value)
