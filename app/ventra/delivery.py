"""Webhook delivery: claim due deliveries, sign, POST, record every attempt.

A delivery is claimed and its attempt row written in one transaction, with
``FOR UPDATE SKIP LOCKED``, so several workers (in one process or several)
never send the same (event, attempt) pair twice. The claim sets a lease;
an attempt still ``in_flight`` when its lease has passed was cut off by a
crash, and is recorded as interrupted before the delivery is retried.

Outcomes are written by one recorder task in batches, so a busy worker
spends one transaction on many attempts. A POST is sent only after its
claim has committed; the outcome's commit may lag behind, which at worst
turns a crash into an extra, recorded attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.signatures import fingerprint, hex_signature, standard_signature
from app.ventra.endpoints import cancel_pending
from app.ventra.errors import DeliveryUnavailable, NotFound
from app.ventra.models import DeliveryAttempt

log = logging.getLogger("ventra.delivery")

# Delays in seconds after each failed automatic attempt; a schedule makes
# 1 + len(delays) automatic attempts.
SCHEDULES: dict[str, tuple[float, ...]] = {
    # About 30 s from the first attempt to the last, for demos and tests.
    "fast": (1, 2, 4, 8, 15),
    # About 27.6 hours from the first attempt to the last.
    "realistic": (5, 300, 1800, 7200, 18000, 36000, 36000),
}
# The longest wait, in seconds, that a Retry-After header can impose.
RETRY_AFTER_CAP = {"fast": 30.0, "realistic": 3600.0}
JITTER = 0.1
RESPONSE_EXCERPT_BYTES = 1024
TEXT_FIELD_CHARS = 2048
USER_AGENT = "Ventra-Webhooks/0.1"
REDACTED = "[redacted]"
SIGNATURE_HEADERS = ("X-Signature", "webhook-signature")
RECORD_BATCH = 256
RECORD_TRIES = 3

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

    @property
    def lease(self) -> timedelta:
        # A live worker finishes an attempt within the timeout; the margin
        # covers the database writes around it.
        return timedelta(seconds=self.timeout + 5)


@dataclass
class Claim:
    """A claimed attempt, ready to send."""

    delivery_id: str
    event_id: str
    number: int
    trigger: str
    env: str
    url: str
    body: bytes
    headers: dict[str, str]


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
    started_at: datetime
    done: asyncio.Future[str] = field(repr=False)


def next_delay(schedule: str, failures: int) -> float | None:
    """Return the jittered delay after ``failures`` automatic failures, or None."""
    delays = SCHEDULES[schedule]
    if failures > len(delays):
        return None
    base = delays[failures - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def signed_headers(
    *, secret: str, body: bytes, event_id: str, delivery_id: str, number: int, now: float
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


CLAIM_SQL = text(
    """
    WITH due AS (
        SELECT d.id
          FROM deliveries d
          JOIN webhook_endpoints w ON w.env = d.env
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND w.enabled AND w.url IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM deliveries older
                WHERE older.order_id = d.order_id
                  AND older.sequence < d.sequence
                  AND older.status IN ('pending', 'in_flight'))
         ORDER BY d.next_attempt_at, d.sequence
         LIMIT :limit
           FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE deliveries
           SET status = 'in_flight',
               attempt_count = deliveries.attempt_count + 1,
               lease_until = now() + :lease,
               updated_at = now()
          FROM due
         WHERE deliveries.id = due.id
        RETURNING deliveries.id, deliveries.event_id, deliveries.attempt_count,
                  deliveries.env
    )
    SELECT c.id, c.event_id, c.attempt_count, c.env, e.body, w.url, w.secret
      FROM claimed c
      JOIN events e ON e.id = c.event_id
      JOIN webhook_endpoints w ON w.env = c.env
    """
)

# A manual retry waits for the row lock instead of skipping: it must see
# whether another worker holds the delivery.
MANUAL_CLAIM_SQL = text(
    """
    SELECT d.id, d.status, d.attempt_count, d.env, e.body,
           w.url, w.secret, w.enabled, w.disabled_reason
      FROM deliveries d
      JOIN events e ON e.id = d.event_id
      JOIN webhook_endpoints w ON w.env = d.env
     WHERE d.event_id = :event_id
       FOR UPDATE OF d
    """
)

MANUAL_START_SQL = text(
    """
    UPDATE deliveries
       SET status = 'in_flight',
           attempt_count = attempt_count + 1,
           lease_until = now() + :lease,
           next_attempt_at = CASE WHEN status = 'pending'
                                  THEN next_attempt_at END,
           updated_at = now()
     WHERE id = :id
    RETURNING attempt_count
    """
)

ATTEMPT_DONE_SQL = text(
    """
    UPDATE delivery_attempts
       SET status = :status, finished_at = :finished_at, latency_ms = :latency_ms,
           http_status = :http_status, error_kind = :error_kind,
           error_message = :error_message, response_excerpt = :excerpt,
           location = :location
     WHERE delivery_id = :delivery_id AND number = :number
    """
)

# A success also settles a delivery that lease recovery had put back in
# the queue: the receiver has the event, so sending it again is pointless.
DELIVERED_SQL = text(
    """
    UPDATE deliveries
       SET status = 'delivered', next_attempt_at = NULL, lease_until = NULL,
           last_http_status = :http_status, last_error_kind = NULL,
           updated_at = :now
     WHERE id = :delivery_id
       AND (status = 'pending' OR (status = 'in_flight' AND attempt_count = :number))
    """
)

FAILED_STATE_SQL = text(
    """
    SELECT d.id, d.status, d.attempt_count, d.schedule, d.next_attempt_at,
           w.enabled,
           (SELECT count(*) FROM delivery_attempts a
             WHERE a.delivery_id = d.id AND a.trigger = 'automatic'
               AND a.status = 'failed') AS automatic_failures,
           EXISTS (SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
               AS delivered_before
      FROM deliveries d
      JOIN webhook_endpoints w ON w.env = d.env
     WHERE d.id = ANY(:ids)
     ORDER BY d.id
       FOR UPDATE OF d
    """
)

FAILED_SQL = text(
    """
    UPDATE deliveries
       SET status = :status, next_attempt_at = :next_attempt_at, lease_until = NULL,
           last_http_status = :http_status, last_error_kind = :error_kind,
           updated_at = :now
     WHERE id = :delivery_id
    """
)

# Interrupted attempts do not count towards the schedule: the receiver did
# nothing wrong, so a crash never turns a delivery into a failed one.
RECOVER_SQL = text(
    """
    WITH stale AS (
        SELECT id FROM deliveries
         WHERE status = 'in_flight' AND lease_until < now()
         ORDER BY id
           FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE delivery_attempts a
           SET status = 'interrupted', finished_at = now(),
               error_kind = 'interrupted',
               error_message = 'the sending process stopped before the'
                               ' attempt was recorded'
          FROM stale
         WHERE a.delivery_id = stale.id AND a.status = 'in_flight'
        RETURNING a.delivery_id, a.event_id, a.number
    ), reset AS (
        UPDATE deliveries d
           SET status = CASE WHEN EXISTS (
                   SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
                 THEN 'delivered' ELSE 'pending' END,
               next_attempt_at = CASE WHEN EXISTS (
                   SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
                 THEN NULL ELSE now() END,
               lease_until = NULL,
               last_error_kind = 'interrupted',
               updated_at = now()
          FROM stale
         WHERE d.id = stale.id
        RETURNING d.id
    )
    SELECT m.delivery_id, m.event_id, m.number,
           (SELECT count(*) FROM reset) AS reset_count
      FROM marked m
    """
)

BULK_RETRY_SQL = text(
    """
    UPDATE deliveries
       SET status = 'pending', next_attempt_at = now(), updated_at = now()
     WHERE env = :env AND status IN ('failed', 'cancelled') AND created_at >= :since
    """
)


class DeliveryWorker:
    """Send due deliveries until stopped; also serves manual retries."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: DeliveryConfig,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[Any]] = set()
        self._finished: asyncio.Queue[Finished | None] = asyncio.Queue(
            maxsize=config.concurrency * 4
        )
        self._recorder: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False

    async def start(self) -> None:
        """Open the HTTP client and start the recorder."""
        connector = aiohttp.TCPConnector(limit=self._config.concurrency + 8)
        self._http = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False
        )
        self._recorder = asyncio.create_task(self._record_loop(), name="recorder")

    async def close(self) -> None:
        """Finish the attempts in flight, record them, close the client."""
        self._stopping = True
        self._wake.set()
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
        if self._recorder is not None:
            await self._finished.put(None)
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send deliveries until stopped or cancelled."""
        next_recovery = 0.0
        while not self._stopping:
            if time.monotonic() >= next_recovery:
                await self._guarded(self.recover_interrupted(), "recovery")
                next_recovery = time.monotonic() + self._config.recovery_interval
            free = self._config.concurrency - len(self._sending)
            claimed = 0
            if free > 0:
                # Shielded: once a claim commits, its attempts must be sent
                # even if this task is cancelled, or they wait for the lease.
                task = asyncio.ensure_future(self._claim_and_send(free))
                self._track(task)
                claimed = await asyncio.shield(task)
            if 0 < free == claimed:
                continue  # every slot was filled; more may be due
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._config.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _guarded(self, work: Any, what: str) -> Any:
        try:
            return await work
        except (DBAPIError, OSError) as exc:
            log.warning("delivery %s failed error=%s", what, exc)
            await asyncio.sleep(1.0)
            return 0

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._sending.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _claim_and_send(self, limit: int) -> int:
        claims = await self._guarded(self._claim(limit), "claim")
        if not claims:
            return 0
        for claim in claims:
            self._track(asyncio.create_task(self._send(claim)))
        return len(claims)

    async def _claim(self, limit: int) -> list[Claim]:
        """Claim due deliveries and write their attempts, in one transaction."""
        async with self._sessions() as session:
            result = await session.execute(
                CLAIM_SQL, {"limit": limit, "lease": self._config.lease}
            )
            claims = [
                self._signed_claim(delivery_id, event_id, number, env, body, url, secret)
                for delivery_id, event_id, number, env, body, url, secret in result
            ]
            if claims:
                await self._insert_attempts(session, claims, secrets_by_claim(result))
                await session.commit()
        return claims

    def _signed_claim(
        self,
        delivery_id: str,
        event_id: str,
        number: int,
        env: str,
        body: bytes,
        url: str,
        secret: str,
        trigger: str = "automatic",
    ) -> Claim:
        headers = signed_headers(
            secret=secret,
            body=body,
            event_id=event_id,
            delivery_id=delivery_id,
            number=number,
            now=time.time(),
        )
        claim = Claim(delivery_id, event_id, number, trigger, env, url, bytes(body), headers)
        claim_fingerprints[id(claim)] = fingerprint(secret)
        return claim
