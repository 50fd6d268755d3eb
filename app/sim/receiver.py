"""The webhook receiver: read the raw body once, verify, answer by mode, record."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from app.core.config import ENVIRONMENTS
from app.core.signatures import verify_hex, verify_standard
from app.sim.endpoints import EndpointRegistry
from app.sim.modes import ModeSettings, flaky_fails
from app.sim.store import AttemptRecord, ParsedEvent, ReceiverStore

log = logging.getLogger("sim.receiver")

MAX_WEBHOOK_BYTES = 256 * 1024
# Standard Webhooks timestamps older or newer than this are rejected.
TIMESTAMP_TOLERANCE_SECONDS = 300
HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")


@dataclass
class Verdict:
    """The result of checking both signature schemes."""

    valid: bool
    error: str | None
    standard_valid: bool | None
    standard_error: str | None


def headers_json(request: web.Request) -> str:
    """Serialize every header, in order, keeping repeated names."""
    pairs = []
    for name, value in request.raw_headers:
        pairs.append(
            [
                name.decode("latin-1").replace("\x00", ""),
                value.decode("utf-8", "backslashreplace").replace("\x00", ""),
            ]
        )
    return json.dumps(pairs)


def verify(secret: str | None, request: web.Request, body: bytes) -> Verdict:
    """Check ``X-Signature`` and, when present, the Standard Webhooks headers."""
    if secret is None:
        return Verdict(False, "no secret is set for this environment", None, None)

    received = request.headers.get("X-Signature")
    if received is None:
        valid, error = False, "X-Signature header is missing"
    elif not HEX_SIGNATURE.fullmatch(received):
        valid, error = False, "X-Signature is not 64 lowercase hex characters"
    elif verify_hex(secret, body, received):
        valid, error = True, None
    else:
        valid, error = False, "X-Signature does not match the body and the secret"

    standard_valid, standard_error = _verify_standard(secret, request, body)
    return Verdict(valid, error, standard_valid, standard_error)


def _verify_standard(
    secret: str, request: web.Request, body: bytes
) -> tuple[bool | None, str | None]:
    msg_id = request.headers.get("webhook-id")
    stamp = request.headers.get("webhook-timestamp")
    header = request.headers.get("webhook-signature")
    if msg_id is None and stamp is None and header is None:
        return None, None
    if msg_id is None or stamp is None or header is None:
        return False, "a Standard Webhooks header is missing"
    if not stamp.isdigit():
        return False, f"webhook-timestamp {stamp[:20]!r} is not a Unix time"
    skew = int(stamp) - time.time()
    if abs(skew) > TIMESTAMP_TOLERANCE_SECONDS:
        return False, f"webhook-timestamp is {int(skew)} s from now; tolerance is 300 s"
    if not verify_standard(secret, msg_id, int(stamp), body, header):
        return False, "webhook-signature does not match"
    return True, None


def parse_event(body: bytes) -> tuple[ParsedEvent | None, str | None]:
    """Parse a Ventra envelope, or say why the body is not one."""
    if not body:
        return None, "the body is empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"the body is not UTF-8 (byte {exc.start})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the body is not JSON: {exc.msg} at position {exc.pos}"
    if not isinstance(data, dict):
        return None, "the body is JSON but not an object"
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 100:
        return None, "the body has no event id"
    if not isinstance(event_type, str) or len(event_type) > 100:
        return None, "the body has no event type"
    order_id = data.get("order_id")
    sequence = data.get("sequence")
    env = data.get("env")
    return (
        ParsedEvent(
            event_id=event_id,
            type=event_type,
            env=env if isinstance(env, str) else "",
            order_id=order_id if isinstance(order_id, str) else None,
            sequence=(
                sequence
                if isinstance(sequence, int)
                and not isinstance(sequence, bool)
                and 0 <= sequence < 2**62
                else None
            ),
            payload=data,
            payload_json=json.dumps(data, ensure_ascii=False).replace("\\u0000", ""),
        ),
        None,
    )


async def _hold(request: web.Request, cap: float) -> bool:
    """Hold the request until the sender disconnects or ``cap`` passes.

    Returns True when the sender gave up first.
    """
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return True
        await asyncio.sleep(0.05)
    return False


class Receiver:
    """Handle ``POST /api/webhooks/ventra/{env}``."""

    def __init__(
        self,
        registry: EndpointRegistry,
        store: ReceiverStore,
        on_attempt: Any = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._on_attempt = on_attempt

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        received_at = datetime.now(timezone.utc)
        env = request.match_info["env"]
        known_env = env in ENVIRONMENTS
        body, too_large = await self._read(request)
        mode = self._registry.mode(env) if known_env else ModeSettings()
        verdict = verify(self._registry.secret(env) if known_env else None, request, body)
        event, parse_error = parse_event(body) if not too_large else (None, "over the size limit")

        status, outcome, payload, extra_headers = self._decide(
            known_env, env, too_large, verdict, event, parse_error, mode
        )
        if mode.mode == "timeout" and known_env:
            gave_up = await _hold(request, mode.timeout_cap)
            if gave_up:
                status, outcome = None, "sender_gave_up"
            else:
                status, outcome = 504, "timeout_cap_reached"
                payload = {"error": "timeout_mode", "message": "held until the cap"}
        elif mode.mode == "slow" and known_env:
            await asyncio.sleep(mode.slow_ms / 1000)

        held_ms = int((time.monotonic() - started) * 1000)
        record = AttemptRecord(
            received_at=received_at,
            env=env[:64],
            known_env=known_env,
            headers_json=headers_json(request),
            body=body,
            event=event,
            delivery_attempt=_int_header(request.headers.get("X-Ventra-Attempt")),
            signature_valid=verdict.valid,
            signature_error=verdict.error,
            standard_signature_valid=verdict.standard_valid,
            standard_signature_error=verdict.standard_error,
            parse_error=parse_error,
            mode=mode.mode if known_env else "n/a",
            status_code=status,
            held_ms=held_ms,
            outcome=outcome,
            apply_to_view=status is not None and 200 <= status < 300 and verdict.valid,
        )
        # The write is shielded: a sender that hangs up must not cancel it.
        attempt_id, is_new = await asyncio.shield(self._store.save(record))
        log.info(
            "webhook received attempt_id=%d env=%s event_id=%s signature_valid=%s"
            " mode=%s status=%s held_ms=%d",
            attempt_id, env[:64], event.event_id if event else None, verdict.valid,
            record.mode, status, held_ms,
        )
        if self._on_attempt is not None:
            self._on_attempt(attempt_id)
        if status is None:
            return web.Response(status=499)
        payload.setdefault("attempt_id", attempt_id)
        if event is not None:
            payload.setdefault("event_id", event.event_id)
            payload["duplicate"] = not is_new
        return web.json_response(payload, status=status, headers=extra_headers)

    async def _read(self, request: web.Request) -> tuple[bytes, bool]:
        body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
        if len(body) > MAX_WEBHOOK_BYTES:
            # Drain the rest so the connection stays usable; keep what fits.
            while await request.content.read(65536):
                pass
            return body[:MAX_WEBHOOK_BYTES], True
        return body, False

    def _decide(
        self,
        known_env: bool,
        env: str,
        too_large: bool,
        verdict: Verdict,
        event: ParsedEvent | None,
        parse_error: str | None,
        mode: ModeSettings,
    ) -> tuple[int, str, dict[str, Any], dict[str, str]]:
        """Choose the status, outcome and body of the answer."""
        if not known_env:
            return 404, "unknown_env", {
                "error": "unknown_environment",
                "message": f"environment {env[:64]!r} not found; use one of"
                f" {', '.join(ENVIRONMENTS)}",
            }, {}
        if too_large:
            return 413, "too_large", {
                "error": "payload_too_large",
                "message": f"the body is over {MAX_WEBHOOK_BYTES} bytes",
            }, {}
        if mode.mode == "offline":
            return 503, "offline", {"error": "offline", "message": "receiver is offline"}, {}
        if mode.mode == "flaky" and flaky_fails(mode.flaky_percent):
            return 503, "flaky_failure", {
                "error": "flaky",
                "message": f"flaky mode failed this request ({mode.flaky_percent}%)",
            }, {}
        if mode.mode == "status":
            headers = {}
            if mode.retry_after is not None:
                headers["Retry-After"] = str(mode.retry_after)
            code = mode.fixed_status
            return code, f"fixed_status_{code}", {
                "error": "fixed_status",
                "message": f"status mode answers {code}",
            }, headers
        if not verdict.valid:
            return 401, "signature_invalid", {
                "error": "invalid_signature",
                "message": verdict.error or "signature invalid",
            }, {}
        if event is None:
            return 400, "unparsable", {
                "error": "invalid_event",
                "message": parse_error or "not an event",
            }, {}
        return 200, "accepted", {"received": True}, {}


def _int_header(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 9:
        return None
    return int(value)
