"""Webhook delivery: claim due deliveries, sign, POST, record every attempt.

A delivery is claimed and its attempt row written in one transaction, with
``FOR UPDATE SKIP LOCKED``, so several workers (in one process or several)
never send the same (event, attempt) pair twice. The claim sets a lease;
an attempt still ``in_flight`` when its lease has passed was cut off by a
crash, and is recorded as interrupted before the delivery is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.signatures import fingerprint, hex_signature, standard_signature
from app.ventra.endpoints import cancel_pending
from app.ventra.errors import DeliveryUnavailable, NotFound
from app.ventra.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint

log = logging.getLogger("ventra.delivery")

# Delays in seconds between attempts; attempts = 1 + len(delays).
SCHEDULES: dict[str, tuple[float, ...]] = {
    "fast": (1, 2, 4, 8, 15),
    # Minutes to hours, like the large webhook providers.
    "realistic": (5, 300, 1800, 7200, 18000, 36000, 36000),
}
RETRY_AFTER_CAP = {"fast": 30.0, "realistic": 3600.0}
JITTER = 0.1
RESPONSE_EXCERPT_BYTES = 1024
USER_AGENT = "Ventra-Webhooks/0.1"
REDACTED = "[redacted]"
SIGNATURE_HEADERS = ("X-Signature", "webhook-signature")


@dataclass(frozen=True)
class DeliveryConfig:
    """Settings of the delivery worker."""

    timeout: float = 10.0
    concurrency: int = 64
    poll_interval: float = 0.25

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
    attempt_id: int
    number: int
    schedule: str
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


def next_delay(schedule: str, attempts_made: int) -> float | None:
    """Return the jittered delay before the next attempt, or None when done."""
    delays = SCHEDULES[schedule]
    if attempts_made > len(delays):
        return None
    base = delays[attempts_made - 1]
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


def parse_retry_after(value: str | None) -> float | None:
    """Read a ``Retry-After`` header given in seconds."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


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
    )
    UPDATE deliveries
       SET status = 'in_flight',
           attempt_count = deliveries.attempt_count + 1,
           lease_until = now() + :lease,
           updated_at = now()
      FROM due
     WHERE deliveries.id = due.id
    RETURNING deliveries.id, deliveries.event_id, deliveries.attempt_count,
              deliveries.schedule, deliveries.env
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._config.concurrency * 2)
        self._http = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False
        )

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send deliveries until the task is cancelled."""
        last_recovery = 0.0
        while not self._stopping:
            try:
                if time.monotonic() - last_recovery > 1.0:
                    await self.recover_interrupted()
                    last_recovery = time.monotonic()
                free = self._config.concurrency - len(self._tasks)
                claims = await self._claim(free) if free > 0 else []
            except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001
                if isinstance(exc, asyncio.CancelledError):
                    raise
                log.warning("delivery claim failed error=%s", exc)
                claims = []
                await asyncio.sleep(1.0)
            for claim in claims:
                task = asyncio.create_task(self._send_and_record(claim, "automatic"))
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
            if claims and len(claims) == free:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._config.poll_interval)
            except asyncio.TimeoutError:
                pass

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _claim(self, limit: int) -> list[Claim]:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    CLAIM_SQL, {"limit": limit, "lease": self._config.lease}
                )
            ).all()
            claims = [
                await self._open_attempt(session, row[0], row[1], row[2], row[3], "automatic")
                for row in rows
            ]
            await session.commit()
        return claims

    async def _open_attempt(
        self,
        session: AsyncSession,
        delivery_id: str,
        event_id: str,
        number: int,
        schedule: str,
        trigger: str,
    ) -> Claim:
        event = await session.get(Event, event_id)
        assert event is not None
        endpoint = await session.get(WebhookEndpoint, event.env)
        assert endpoint is not None and endpoint.url is not None
        headers = signed_headers(
            secret=endpoint.secret,
            body=event.body,
            event_id=event_id,
            delivery_id=delivery_id,
            number=number,
            now=time.time(),
        )
        attempt = DeliveryAttempt(
            delivery_id=delivery_id,
            event_id=event_id,
            number=number,
            trigger=trigger,
            status="in_flight",
            started_at=datetime.now(timezone.utc),
            request_headers=redacted(headers),
            endpoint_url=endpoint.url,
            endpoint_env=endpoint.env,
            secret_fingerprint=fingerprint(endpoint.secret),
        )
        session.add(attempt)
        await session.flush()
        return Claim(
            delivery_id=delivery_id,
            event_id=event_id,
            attempt_id=attempt.id,
            number=number,
            schedule=schedule,
            env=endpoint.env,
            url=endpoint.url,
            body=event.body,
            headers=headers,
        )

    async def _post(self, claim: Claim) -> Outcome:
        assert self._http is not None
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            async with self._http.post(
                claim.url,
                data=claim.body,
                headers=claim.headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    # Any 2xx is success; the body is not read.
                    return Outcome(ok=True, latency_ms=elapsed(), http_status=status)
                raw = await response.content.read(RESPONSE_EXCERPT_BYTES)
                excerpt = raw.decode("utf-8", "replace")
                kind = "redirect" if 300 <= status < 400 else "http_status"
                return Outcome(
                    ok=False,
                    latency_ms=elapsed(),
                    http_status=status,
                    error_kind=kind,
                    error_message=f"endpoint answered HTTP {status}",
                    excerpt=excerpt,
                    location=response.headers.get("Location"),
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
        except asyncio.TimeoutError:
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind="timeout",
                error_message=f"no response within {self._config.timeout:g} s",
            )
        except aiohttp.ClientConnectorError as exc:
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind="connection_refused",
                error_message=str(exc),
            )
        except aiohttp.ClientError as exc:
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind="connection_error",
                error_message=f"{type(exc).__name__}: {exc}",
            )

    async def _send_and_record(self, claim: Claim, trigger: str) -> Outcome:
        outcome = await self._post(claim)
        await self._record(claim, trigger, outcome)
        return outcome

    async def _record(self, claim: Claim, trigger: str, outcome: Outcome) -> None:
        now = datetime.now(timezone.utc)
        async with self._sessions() as session:
            await session.execute(
                update(DeliveryAttempt)
                .where(DeliveryAttempt.id == claim.attempt_id)
                .values(
                    status="succeeded" if outcome.ok else "failed",
                    finished_at=now,
                    latency_ms=outcome.latency_ms,
                    http_status=outcome.http_status,
                    error_kind=outcome.error_kind,
                    error_message=outcome.error_message,
                    response_excerpt=outcome.excerpt,
                    location=outcome.location,
                )
            )
            delivery = await session.get(Delivery, claim.delivery_id, with_for_update=True)
            assert delivery is not None
            self._advance(delivery, trigger, outcome, now)
            if outcome.http_status == 410:
                await self._disable_gone(session, claim.env, now)
            await session.commit()
        log.info(
            "delivery attempt event_id=%s delivery_id=%s attempt=%d trigger=%s"
            " outcome=%s status=%s error_kind=%s latency_ms=%d next=%s",
            claim.event_id, claim.delivery_id, claim.number, trigger,
            "succeeded" if outcome.ok else "failed", outcome.http_status,
            outcome.error_kind, outcome.latency_ms, delivery.status,
        )

    def _advance(
        self, delivery: Delivery, trigger: str, outcome: Outcome, now: datetime
    ) -> None:
        delivery.last_http_status = outcome.http_status
        delivery.last_error_kind = outcome.error_kind
        delivery.updated_at = now
        if outcome.ok:
            delivery.status = "delivered"
            delivery.next_attempt_at = None
            delivery.lease_until = None
            return
        if trigger == "manual":
            # A manual retry leaves the automatic schedule where it was.
            if delivery.status == "in_flight":
                delivery.status = "pending" if delivery.next_attempt_at else "failed"
            delivery.lease_until = None
            return
        delay = next_delay(delivery.schedule, delivery.attempt_count)
        if outcome.http_status == 410 or delay is None:
            delivery.status = "failed"
            delivery.next_attempt_at = None
        else:
            if outcome.retry_after is not None and outcome.http_status in (429, 503):
                cap = RETRY_AFTER_CAP[delivery.schedule]
                delay = max(delay, min(outcome.retry_after, cap))
            delivery.status = "pending"
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        delivery.lease_until = None

    async def _disable_gone(self, session: AsyncSession, env: str, now: datetime) -> None:
        endpoint = await session.get(WebhookEndpoint, env, with_for_update=True)
        if endpoint is not None and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = "endpoint answered 410 Gone"
            endpoint.updated_at = now
            cancelled = await cancel_pending(session, env, now)
            log.warning(
                "endpoint disabled env=%s reason=410_gone cancelled=%d", env, cancelled
            )

    async def recover_interrupted(self) -> int:
        """Mark attempts cut off by a crash and put their deliveries back."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    text(
                        """
                        SELECT id, attempt_count, schedule FROM deliveries
                         WHERE status = 'in_flight' AND lease_until < now()
                         FOR UPDATE SKIP LOCKED
                        """
                    )
                )
            ).all()
            now = datetime.now(timezone.utc)
            for delivery_id, attempts, schedule in rows:
                await session.execute(
                    update(DeliveryAttempt)
                    .where(
                        DeliveryAttempt.delivery_id == delivery_id,
                        DeliveryAttempt.status == "in_flight",
                    )
                    .values(
                        status="interrupted",
                        finished_at=now,
                        error_kind="interrupted",
                        error_message="the sending process stopped before the"
                        " attempt finished",
                    )
                )
                delay = next_delay(schedule, attempts)
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery_id)
                    .values(
                        status="pending" if delay is not None else "failed",
                        next_attempt_at=now if delay is not None else None,
                        lease_until=None,
                        last_error_kind="interrupted",
                        updated_at=now,
                    )
                )
                log.warning(
                    "delivery attempt interrupted delivery_id=%s attempt=%d",
                    delivery_id, attempts,
                )
            await session.commit()
        return len(rows)

    async def retry_now(self, event_id: str) -> dict[str, Any]:
        """Send a manual attempt now, signed with the endpoint's current secret."""
        async with self._sessions() as session:
            delivery = await session.scalar(
                select(Delivery).where(Delivery.event_id == event_id).with_for_update()
            )
            if delivery is None:
                raise NotFound(f"event {event_id!r} not found", event_id=event_id)
            endpoint = await session.get(WebhookEndpoint, delivery.env)
            if endpoint is None or not endpoint.enabled or not endpoint.url:
                reason = (
                    "has no URL" if endpoint is not None and not endpoint.url
                    else f"is disabled ({endpoint.disabled_reason if endpoint else 'missing'})"
                )
                raise DeliveryUnavailable(
                    f"the {delivery.env} endpoint {reason}; enable it with"
                    f" PUT /v1/webhook-endpoints/{delivery.env} before retrying",
                    event_id=event_id,
                )
            if delivery.status == "in_flight":
                raise DeliveryUnavailable(
                    f"event {event_id} has an attempt in flight; retry when it ends",
                    code="attempt_in_flight",
                    event_id=event_id,
                )
            delivery.attempt_count += 1
            previous_status = delivery.status
            delivery.status = "in_flight"
            delivery.lease_until = datetime.now(timezone.utc) + self._config.lease
            if previous_status != "pending":
                delivery.next_attempt_at = None
            claim = await self._open_attempt(
                session, delivery.id, event_id, delivery.attempt_count,
                delivery.schedule, "manual",
            )
            await session.commit()
        outcome = await self._send_and_record(claim, "manual")
        return {
            "event_id": event_id,
            "delivery_id": claim.delivery_id,
            "attempt": claim.number,
            "http_status": outcome.http_status,
            "latency_ms": outcome.latency_ms,
            "outcome": "succeeded" if outcome.ok else "failed",
            "error_kind": outcome.error_kind,
        }

    async def retry_failed(self, env: str, since: datetime) -> int:
        """Queue every failed delivery of ``env`` created since ``since``."""
        now = datetime.now(timezone.utc)
        async with self._sessions() as session:
            result = await session.execute(
                update(Delivery)
                .where(
                    Delivery.env == env,
                    Delivery.status == "failed",
                    Delivery.created_at >= since,
                )
                .values(status="pending", next_attempt_at=now, updated_at=now)
            )
            await session.commit()
        self.wake()
        count = result.rowcount or 0
        log.info("bulk retry queued env=%s since=%s count=%d", env, since.isoformat(), count)
        return count
