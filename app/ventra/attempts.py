"""Attempt rules of webhook delivery: schedules, signed headers, outcomes."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.signatures import fingerprint, hex_signature, standard_signature
from app.ventra.delivery_sql import INSERT_ATTEMPTS_SQL
from app.ventra.endpoints import cancel_pending
from app.ventra.errors import DeliveryUnavailable

log = logging.getLogger("ventra.delivery")


# Delays in seconds after each failed automatic attempt; a schedule makes
# 1 + len(delays) automatic attempts.
SCHEDULES: dict[str, tuple[float, ...]] = {
    # About 30 s from the first attempt to the last, for demos and tests.
    "fast": (1, 2, 4, 8, 15),
    # About 27.6 hours from the first attempt to the last.
    "realistic": (5, 300, 1800, 7200, 18000, 36000, 36000),
}
# The maximum wait, in seconds, that a Retry-After header can impose.
RETRY_AFTER_CAP = {"fast": 30.0, "realistic": 3600.0}
JITTER = 0.1
RESPONSE_EXCERPT_BYTES = 1024
TEXT_FIELD_CHARS = 2048
USER_AGENT = "Ventra-Webhooks/0.1"
REDACTED = "[redacted]"
SIGNATURE_HEADERS = ("X-Signature", "webhook-signature")
RECORD_BATCH = 256
# Seconds a small batch of outcomes waits for more before it is written.
RECORD_LINGER = 0.02
RECORD_TRIES = 3
# Seconds that closing the worker waits for POSTs in flight before it cuts
# them off; lease recovery later records them as interrupted.
SHUTDOWN_GRACE = 2.0
RECORDERS = 2
# A claimed attempt not started within this many seconds of its claim is
# handed back unsent, so its lease cannot run out during the POST.
START_WINDOW = 3.0
LEASE_MARGIN = 2.0
# The worker claims ahead about this many seconds of sending, at the rate
# it has recently reached, and at most MAX_CLAIM deliveries at a time.
PREFETCH_SECONDS = 1.0
MAX_CLAIM = 2048
PARALLEL_CLAIMS = 2
# Manual retries a worker sends at once; more get 429 until one has ended.
MANUAL_RETRIES = 16

# Error kinds stored with failed attempts.
CONNECTION_REFUSED = "connection_refused"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
REDIRECT = "redirect"
HTTP_STATUS = "http_status"
RESPONSE_TOO_LARGE = "response_too_large"
INVALID_RESPONSE = "invalid_response"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class DeliveryConfig:
    """Settings of the delivery worker."""

    timeout: float = 10.0
    concurrency: int = 64
    poll_interval: float = 0.25
    recovery_interval: float = 1.0
    start_window: float = START_WINDOW

    @property
    def lease(self) -> timedelta:
        # A live worker starts an attempt within start_window of its claim
        # and ends it within the timeout; the rest covers clock and writes.
        return timedelta(seconds=self.start_window + self.timeout + LEASE_MARGIN)


@dataclass
class Claim:
    """A claimed attempt, ready to send."""

    delivery_id: str
    event_id: str
    number: int
    trigger: str
    env: str
    url: str
    secret_fingerprint: str
    body: bytes
    headers: dict[str, str]
    # time.monotonic() after which the attempt must not start.
    start_by: float = float("inf")


@dataclass
class Outcome:
    """The result of one POST."""

    ok: bool
    latency_ms: int
    http_status: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    excerpt: str | None = None
    location: str | None = None
    retry_after: float | None = None


@dataclass
class Finished:
    """An attempt waiting for the recorder, and the future of its commit."""

    claim: Claim
    outcome: Outcome
    # Set for manual retries, whose caller waits for the commit.
    done: asyncio.Future[str] | None = field(default=None, repr=False)


def next_delay(schedule: str, failures: int) -> float | None:
    """Return the jittered delay after ``failures`` automatic failures, or None."""
    delays = SCHEDULES[schedule]
    if failures > len(delays):
        return None
    base = delays[failures - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def signed_headers(
    *,
    secret: str,
    body: bytes,
    event_id: str,
    delivery_id: str,
    number: int,
    now: float,
) -> dict[str, str]:
    """Build the headers of one attempt, signed afresh."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Signature": hex_signature(secret, body),
        "X-Ventra-Event-Id": event_id,
        "X-Ventra-Delivery-Id": delivery_id,
        "X-Ventra-Attempt": str(number),
        "X-Ventra-Timestamp": str(timestamp),
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, event_id, timestamp, body),
    }


def redacted(headers: dict[str, str]) -> dict[str, str]:
    """Return the headers with signature values replaced, for the record."""
    return {k: (REDACTED if k in SIGNATURE_HEADERS else v) for k, v in headers.items()}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header: seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(seconds, 0.0)


def clean_text(value: str | None, limit: int = TEXT_FIELD_CHARS) -> str | None:
    """Make text from the network storable: no NUL, no lone surrogate, bounded."""
    if value is None:
        return None
    value = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return value[:limit]


def signed_claim(
    delivery_id: str,
    event_id: str,
    number: int,
    env: str,
    body: bytes,
    url: str,
    secret: str,
    *,
    trigger: str,
) -> Claim:
    """Sign an attempt with the secret read in the claiming transaction."""
    body = bytes(body)
    headers = signed_headers(
        secret=secret,
        body=body,
        event_id=event_id,
        delivery_id=delivery_id,
        number=number,
        now=time.time(),
    )
    return Claim(
        delivery_id=delivery_id,
        event_id=event_id,
        number=number,
        trigger=trigger,
        env=env,
        url=url,
        secret_fingerprint=fingerprint(secret),
        body=body,
        headers=headers,
    )


def json_rows(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Bind rows as the one JSON parameter of a ``jsonb_to_recordset`` statement."""
    return {"rows": json.dumps(rows)}


async def insert_attempts(
    session: AsyncSession | AsyncConnection, claims: list[Claim]
) -> None:
    """Write the in-flight attempt rows of claims, before anything is sent."""
    rows = [
        {
            "delivery_id": c.delivery_id,
            "event_id": c.event_id,
            "number": c.number,
            "trigger": c.trigger,
            "request_headers": redacted(c.headers),
            "endpoint_url": c.url,
            "endpoint_env": c.env,
            "secret_fingerprint": c.secret_fingerprint,
        }
        for c in claims
    ]
    await session.execute(
        INSERT_ATTEMPTS_SQL, {"started_at": datetime.now(UTC), **json_rows(rows)}
    )


def check_retryable(event_id: str, row: Any) -> None:
    """Raise when a manual retry of this delivery cannot be sent now."""
    if not row.enabled or not row.url:
        reason = (
            "has no URL"
            if not row.url
            else f"is disabled ({row.disabled_reason or 'no reason recorded'})"
        )
        raise DeliveryUnavailable(
            f"the {row.env} endpoint {reason}; enable it with"
            f" PUT /v1/webhook-endpoints/{row.env} before retrying",
            event_id=event_id,
            env=row.env,
        )
    if row.status == "in_flight":
        raise DeliveryUnavailable(
            f"event {event_id} has an attempt in flight; retry when it ends",
            code="attempt_in_flight",
            event_id=event_id,
        )


def attempt_values(item: Finished) -> dict[str, Any]:
    """Return the columns that finish an attempt row."""
    outcome = item.outcome
    return {
        "delivery_id": item.claim.delivery_id,
        "number": item.claim.number,
        "status": "succeeded" if outcome.ok else "failed",
        "latency_ms": outcome.latency_ms,
        "http_status": outcome.http_status,
        "error_kind": outcome.error_kind,
        "error_message": outcome.error_message,
        "excerpt": outcome.excerpt,
        "location": outcome.location,
    }


def next_state(item: Finished, row: Any, now: datetime) -> tuple[str, datetime | None]:
    """Return the status and next attempt time of a delivery after a failure."""
    outcome = item.outcome
    if item.claim.trigger == "manual":
        # A manual retry leaves the automatic schedule where it was.
        if row.delivered_before:
            return "delivered", None
        if outcome.http_status == 410:
            return "failed", None  # as for an automatic attempt
        if not row.enabled:
            return "cancelled", None
        if row.next_attempt_at is not None:
            return "pending", row.next_attempt_at
        return "failed", None
    if outcome.http_status == 410:
        return "failed", None
    if not row.enabled:
        return "cancelled", None
    delay = next_delay(row.schedule, row.automatic_failures)
    if delay is None:
        return "failed", None
    if outcome.retry_after is not None and outcome.http_status in (429, 503):
        cap = RETRY_AFTER_CAP[row.schedule]
        delay = max(delay, min(outcome.retry_after, cap))
    return "pending", now + timedelta(seconds=delay)


async def disable_gone(
    session: AsyncSession | AsyncConnection, env: str, now: datetime
) -> None:
    """Disable an endpoint that returned 410 Gone and cancel its pending deliveries."""
    result = await session.execute(
        text(
            "UPDATE webhook_endpoints SET enabled = false,"
            " disabled_reason = 'endpoint answered 410 Gone', updated_at = :now"
            " WHERE env = :env AND enabled"
        ),
        {"env": env, "now": now},
    )
    if cast(CursorResult[Any], result).rowcount:
        cancelled = await cancel_pending(session, env, now)
        log.warning(
            "endpoint disabled env=%s reason=410_gone cancelled=%d", env, cancelled
        )


def log_attempt(item: Finished, status: str) -> None:
    """Log one line per attempt: ids and outcome, never a secret or signature."""
    claim, outcome = item.claim, item.outcome
    log.info(
        "delivery attempt event_id=%s delivery_id=%s attempt=%d trigger=%s"
        " outcome=%s http_status=%s error_kind=%s latency_ms=%d delivery_status=%s",
        claim.event_id,
        claim.delivery_id,
        claim.number,
        claim.trigger,
        "succeeded" if outcome.ok else "failed",
        outcome.http_status,
        outcome.error_kind,
        outcome.latency_ms,
        status,
    )
