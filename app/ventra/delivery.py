"""Webhook delivery: claim due deliveries, sign, POST, record every attempt.

A delivery is claimed and its attempt row written in one transaction,
with ``FOR UPDATE SKIP LOCKED``. So several workers, in one process or
several, never send the same (event, attempt) pair twice. The claim sets a
lease. An attempt still ``in_flight`` after its lease has expired was cut
off by a crash, so it is recorded as interrupted before the delivery is
retried.

Outcomes are written by one recorder task in batches, so a busy worker
spends one transaction on many attempts. A POST is sent only after its
claim has committed. The outcome's commit may lag behind, so a crash can
at worst cause an extra attempt, which is recorded too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from sqlalchemy import CursorResult, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ventra.attempts import (
    CONNECTION_ERROR,
    CONNECTION_REFUSED,
    HTTP_STATUS,
    INVALID_RESPONSE,
    RECORD_BATCH,
    RECORD_TRIES,
    REDIRECT,
    RESPONSE_EXCERPT_BYTES,
    RESPONSE_TOO_LARGE,
    TIMEOUT,
    Claim,
    DeliveryConfig,
    Finished,
    Outcome,
    attempt_values,
    check_retryable,
    clean_text,
    disable_gone,
    insert_attempts,
    log_attempt,
    next_state,
    parse_retry_after,
    signed_claim,
)
from app.ventra.delivery_sql import (
    ATTEMPT_DONE_SQL,
    BULK_RETRY_SQL,
    CLAIM_SQL,
    DELIVERED_SQL,
    FAILED_SQL,
    FAILED_STATE_SQL,
    MANUAL_CLAIM_SQL,
    MANUAL_START_SQL,
    RECOVER_SQL,
)
from app.ventra.errors import DeliveryUnavailable, NotFound

log = logging.getLogger("ventra.delivery")


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
        floor = max(1, self._config.concurrency // 4)
        while not self._stopping:
            # Cleared before the slots are counted, so a send that ends
            # from here on wakes the wait below.
            self._wake.clear()
            if time.monotonic() >= next_recovery:
                await self._guarded(self.recover_interrupted(), "recovery")
                next_recovery = time.monotonic() + self._config.recovery_interval
            busy = len(self._sending)
            free = self._config.concurrency - busy
            # While POSTs are in flight, wait for a quarter of the slots to
            # free up, so that one transaction claims several deliveries.
            if free > 0 and (busy == 0 or free >= floor):
                # Shielded: once a claim commits, its attempts must be sent
                # even if this task is cancelled, or they wait for the lease.
                task = asyncio.ensure_future(self._claim_and_send(free))
                self._track(task)
                if await asyncio.shield(task) == free:
                    continue  # every slot was filled; more may be due
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for can
            # swallow a cancellation that arrives as the wait ends, and the
            # server's stop would then wait for this loop forever.
            try:
                async with asyncio.timeout(self._config.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _guarded(self, work: Awaitable[Any], what: str) -> Any:
        """Await database work, logging a failure and pausing instead of raising."""
        try:
            return await work
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            log.warning("delivery %s failed error=%s", what, exc)
            await asyncio.sleep(1.0)
            return None

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
            rows = (
                await session.execute(
                    CLAIM_SQL, {"limit": limit, "lease": self._config.lease}
                )
            ).all()
            claims = [signed_claim(*row, trigger="automatic") for row in rows]
            if claims:
                await insert_attempts(session, claims)
            await session.commit()
        return claims

    async def _send(self, claim: Claim) -> tuple[Outcome, asyncio.Future[str]]:
        """POST one attempt and hand its outcome to the recorder.

        The returned future resolves to the delivery's new status once the
        outcome is committed. The caller's slot is free before that, so the
        next POST need not wait for the database.
        """
        outcome = await self._post(claim)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self._finished.put(Finished(claim, outcome, done))
        return outcome, done

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
                return await self._failed_response(response, elapsed)
        except TimeoutError:
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind=TIMEOUT,
                error_message=f"no response within {self._config.timeout:g} s",
            )
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind=CONNECTION_REFUSED if refused else CONNECTION_ERROR,
                error_message=clean_text(str(exc)),
            )
        except aiohttp.ClientResponseError as exc:
            # aiohttp raises this when the status line or headers cannot be
            # parsed. Its default parser (3.14) words a header over the size
            # limit as "Got more than N bytes when reading ...".
            if str(exc.message).startswith("Got more than"):
                return Outcome(
                    ok=False,
                    latency_ms=elapsed(),
                    error_kind=RESPONSE_TOO_LARGE,
                    error_message="the response headers are over the client's size limit",
                )
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind=INVALID_RESPONSE,
                error_message=clean_text(f"invalid HTTP response: {exc.message}", 300),
            )
        except aiohttp.ClientError as exc:
            return Outcome(
                ok=False,
                latency_ms=elapsed(),
                error_kind=CONNECTION_ERROR,
                error_message=clean_text(f"{type(exc).__name__}: {exc}"),
            )

    async def _failed_response(
        self, response: aiohttp.ClientResponse, elapsed: Callable[[], int]
    ) -> Outcome:
        status = response.status
        try:
            raw = await response.content.read(RESPONSE_EXCERPT_BYTES)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""  # the status is the outcome; the excerpt is a courtesy
        redirect = 300 <= status < 400
        return Outcome(
            ok=False,
            latency_ms=elapsed(),
            http_status=status,
            error_kind=REDIRECT if redirect else HTTP_STATUS,
            error_message=(
                f"endpoint returned HTTP {status}"
                + ("; redirects are not followed" if redirect else "")
            ),
            excerpt=clean_text(raw.decode("utf-8", "replace")),
            location=clean_text(response.headers.get("Location")),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    async def _record_loop(self) -> None:
        """Write finished attempts in batches until a ``None`` arrives."""
        stop = False
        while not stop:
            batch: list[Finished] = []
            item = await self._finished.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= RECORD_BATCH or self._finished.empty():
                    break
                item = self._finished.get_nowait()
            stop = item is None
            if not batch:
                continue
            try:
                await self._record(batch)
            except Exception as exc:
                log.exception("delivery outcomes not recorded count=%d", len(batch))
                for finished in batch:
                    if not finished.done.done():
                        finished.done.set_exception(exc)

    async def _record(self, batch: list[Finished]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                statuses = await self._write(batch)
            except (DBAPIError, OSError) as exc:
                if attempt == RECORD_TRIES:
                    # The lease runs out and recovery marks them interrupted.
                    log.error(
                        "delivery outcomes not recorded count=%d error=%s",
                        len(batch),
                        exc,
                    )
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc)
                    return
                await asyncio.sleep(0.2 * attempt)
                continue
            for item in batch:
                status = statuses.get(item.claim.delivery_id, "unchanged")
                log_attempt(item, status)
                if not item.done.done():
                    item.done.set_result(status)
            return

    async def _write(self, batch: list[Finished]) -> dict[str, str]:
        """Record outcomes and move their deliveries on, in one transaction."""
        now = datetime.now(UTC)
        batch = sorted(batch, key=lambda item: item.claim.delivery_id)
        statuses: dict[str, str] = {}
        async with self._sessions() as session:
            # Losing this commit in a database crash is safe: the attempt
            # stays in flight and lease recovery sends it again.
            await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            await session.execute(
                ATTEMPT_DONE_SQL, [attempt_values(i, now) for i in batch]
            )
            delivered = [i for i in batch if i.outcome.ok]
            failed = [i for i in batch if not i.outcome.ok]
            if delivered:
                await session.execute(
                    DELIVERED_SQL,
                    [
                        {
                            "delivery_id": i.claim.delivery_id,
                            "number": i.claim.number,
                            "http_status": i.outcome.http_status,
                            "now": now,
                        }
                        for i in delivered
                    ],
                )
                statuses.update((i.claim.delivery_id, "delivered") for i in delivered)
            if failed:
                statuses.update(await self._advance_failed(session, failed, now))
            await session.commit()
        return statuses

    async def _advance_failed(
        self, session: AsyncSession, failed: list[Finished], now: datetime
    ) -> dict[str, str]:
        for env in sorted(
            {i.claim.env for i in failed if i.outcome.http_status == 410}
        ):
            await disable_gone(session, env, now)
        rows = await session.execute(
            FAILED_STATE_SQL, {"ids": [i.claim.delivery_id for i in failed]}
        )
        state = {row.id: row for row in rows}
        updates = []
        statuses: dict[str, str] = {}
        for item in failed:
            row = state.get(item.claim.delivery_id)
            if (
                row is None
                or row.status != "in_flight"
                or (row.attempt_count != item.claim.number)
            ):
                continue  # lease recovery already moved this delivery on
            status, next_at = next_state(item, row, now)
            statuses[item.claim.delivery_id] = status
            updates.append(
                {
                    "delivery_id": item.claim.delivery_id,
                    "status": status,
                    "next_attempt_at": next_at,
                    "http_status": item.outcome.http_status,
                    "error_kind": item.outcome.error_kind,
                    "now": now,
                }
            )
        if updates:
            await session.execute(FAILED_SQL, updates)
        return statuses

    async def recover_interrupted(self) -> int:
        """Mark attempts cut off by a crash and put their deliveries back."""
        async with self._sessions() as session:
            rows = (await session.execute(RECOVER_SQL)).all()
            await session.commit()
        for delivery_id, event_id, number, _ in rows:
            log.warning(
                "delivery attempt interrupted event_id=%s delivery_id=%s attempt=%d",
                event_id,
                delivery_id,
                number,
            )
        return len(rows)

    async def retry_now(self, event_id: str) -> dict[str, Any]:
        """Send a manual attempt now, signed with the endpoint's current secret."""
        if self._http is None or self._recorder is None:
            raise DeliveryUnavailable(
                "the delivery worker is not running; start Ventra with its worker",
                code="worker_stopped",
                http_status=503,
            )
        async with self._sessions() as session:
            row = (
                await session.execute(MANUAL_CLAIM_SQL, {"event_id": event_id})
            ).first()
            if row is None:
                raise NotFound(f"event {event_id!r} not found", event_id=event_id)
            check_retryable(event_id, row)
            number = await session.scalar(
                MANUAL_START_SQL, {"id": row.id, "lease": self._config.lease}
            )
            claim = signed_claim(
                row.id,
                event_id,
                number,
                row.env,
                row.body,
                row.url,
                row.secret,
                trigger="manual",
            )
            await insert_attempts(session, [claim])
            await session.commit()
        outcome, done = await self._send(claim)
        delivery_status = await done
        return {
            "event_id": event_id,
            "delivery_id": claim.delivery_id,
            "attempt": claim.number,
            "outcome": "succeeded" if outcome.ok else "failed",
            "http_status": outcome.http_status,
            "latency_ms": outcome.latency_ms,
            "error_kind": outcome.error_kind,
            "error_message": outcome.error_message,
            "delivery_status": delivery_status,
        }

    async def retry_failed(self, env: str, since: datetime) -> int:
        """Queue the failed and cancelled deliveries of ``env`` created since ``since``.

        Each gets one more automatic attempt; the schedule is not restarted.
        """
        async with self._sessions() as session:
            enabled = await session.scalar(
                text(
                    "SELECT enabled AND url IS NOT NULL FROM webhook_endpoints"
                    " WHERE env = :env"
                ),
                {"env": env},
            )
            if not enabled:
                raise DeliveryUnavailable(
                    f"the {env} endpoint is disabled or has no URL; enable it with"
                    f" PUT /v1/webhook-endpoints/{env} before retrying",
                    env=env,
                )
            result = await session.execute(BULK_RETRY_SQL, {"env": env, "since": since})
            await session.commit()
        self.wake()
        count = cast(CursorResult[Any], result).rowcount or 0
        log.info(
            "bulk retry queued env=%s since=%s count=%d", env, since.isoformat(), count
        )
        return count
