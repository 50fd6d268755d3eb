"""Webhook delivery: claim due deliveries, sign, POST, record every attempt.

A delivery is claimed and its attempt row written in one transaction,
with ``FOR UPDATE SKIP LOCKED``. So several workers, in one process or
several, never send the same (event, attempt) pair twice. The claim sets a
lease. An attempt still ``in_flight`` after its lease has expired was cut
off by a crash, so it is recorded as interrupted before the delivery is
retried.

Each environment has its own senders, ready queue and claims, so an
endpoint that hangs holds only its own environment's webhooks. The worker
claims ahead of its senders, so one transaction serves many attempts. The
lease covers a start window, the timeout and a margin: an attempt that
waited in the queue past its start window goes back unsent, so no POST can
still be running when its lease runs out.

Outcomes are written by one recorder task in batches, so a busy worker
spends one transaction on many attempts. A POST is sent only after its
claim has committed. The outcome's commit may lag behind, so a crash can
at worst cause an extra attempt, which is recorded too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from sqlalchemy import CursorResult, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from app.core.config import ENVIRONMENTS
from app.ventra.attempts import (
    CONNECTION_ERROR,
    CONNECTION_REFUSED,
    HTTP_STATUS,
    INVALID_RESPONSE,
    MANUAL_RETRIES,
    MAX_CLAIM,
    PARALLEL_CLAIMS,
    PREFETCH_SECONDS,
    RECORD_BATCH,
    RECORD_LINGER,
    RECORD_TRIES,
    RECORDERS,
    REDIRECT,
    RESPONSE_EXCERPT_BYTES,
    RESPONSE_TOO_LARGE,
    SHUTDOWN_GRACE,
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
    json_rows,
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
    MANUAL_LOCK_SQL,
    MANUAL_START_SQL,
    RECOVER_SQL,
    RELEASE_SQL,
)
from app.ventra.errors import DeliveryUnavailable, NotFound

log = logging.getLogger("ventra.delivery")


def item_env(item: Finished | Claim) -> str:
    """Return the environment of a recorder item."""
    return item.claim.env if isinstance(item, Finished) else item.env


def is_manual(item: Finished | Claim) -> bool:
    """Tell whether a recorder item is a manual retry, whose caller waits."""
    return isinstance(item, Finished) and item.done is not None


def settle(
    batch: list[Finished | Claim],
    *,
    statuses: dict[str, str] | None = None,
    error: BaseException | None = None,
) -> None:
    """Log recorded attempts and resolve the futures of manual retries."""
    for item in batch:
        if not isinstance(item, Finished):
            continue
        status = (statuses or {}).get(item.claim.delivery_id, "unchanged")
        if error is None:
            log_attempt(item, status)
        if item.done is None or item.done.done():
            continue
        if error is not None:
            item.done.set_exception(error)
        else:
            item.done.set_result(status)


class RateMeter:
    """Attempts finished per second, rising at once and falling gently."""

    def __init__(self) -> None:
        self.count = 0
        self._rate = 0.0
        self._mark = time.monotonic()
        self._marked = 0

    def per_second(self) -> float:
        now = time.monotonic()
        elapsed = now - self._mark
        # A window ends after 0.2 s, or sooner once it has seen enough
        # attempts, so the estimate catches up quickly when work arrives.
        if elapsed >= 0.2 or (self.count - self._marked >= 32 and elapsed >= 0.01):
            current = (self.count - self._marked) / elapsed
            self._rate = max(current, (self._rate + current) / 2)
            self._mark, self._marked = now, self.count
        return self._rate


def http_session(limit: int) -> aiohttp.ClientSession:
    """Open an HTTP client that keeps at most ``limit`` connections."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        auto_decompress=False,
        trust_env=False,
    )


class Lane:
    """One environment's share of the worker: its senders, queue and claims."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.ready: asyncio.Queue[Claim | None] = asyncio.Queue()
        self.senders: list[asyncio.Task[None]] = []
        # A pool of its own, with a connection for each sender, so a POST
        # never waits for a connection in use by another environment.
        self.http: aiohttp.ClientSession | None = None
        self.posting = 0
        self.sent = RateMeter()
        # Claims in progress, and how many deliveries they asked for.
        self.claims: set[asyncio.Task[None]] = set()
        self.requested = 0
        # True once a claim found fewer due deliveries than it asked for:
        # then a finished POST is no reason to claim again, but new events,
        # a recorded outcome or the poll interval are.
        self.drained = False
        # The lane claims again once at most this many attempts are held.
        self.refill_at = 0
        # Incremented by endpoint_changed, so a claim that read the old
        # endpoint settings can tell.
        self.version = 0

    def held(self) -> int:
        """Return the attempts being sent, queued or being claimed."""
        return self.posting + self.ready.qsize() + self.requested

    def claim_limit(self, concurrency: int) -> int:
        """Return how many deliveries to claim now; 0 to wait."""
        # Read first, so the rate also decays while nothing is claimed.
        rate = self.sent.per_second()
        if self.drained or len(self.claims) >= PARALLEL_CLAIMS:
            return 0
        ahead = min(int(rate * PREFETCH_SECONDS), MAX_CLAIM)
        capacity = concurrency + ahead
        held = self.held()
        room = capacity - held
        # While attempts are held, wait for a quarter of the capacity to
        # free up, so that one transaction claims many deliveries.
        self.refill_at = capacity - max(1, capacity // 4)
        if room <= 0 or (held and held > self.refill_at):
            return 0
        return min(room, MAX_CLAIM)

    def take_queued(self) -> list[Claim]:
        """Empty the ready queue and return its claims; stop signals stay."""
        claims, stops = [], 0
        while not self.ready.empty():
            claim = self.ready.get_nowait()
            if claim is None:
                stops += 1
            else:
                claims.append(claim)
        for _ in range(stops):
            self.ready.put_nowait(None)
        return claims


class DeliveryWorker:
    """Send due deliveries until stopped; also serves manual retries.

    Each environment has a lane of ``concurrency`` sender tasks that take
    claimed attempts from the lane's ready queue and POST them. The run loop
    claims ahead of them, per lane, in batches sized to what the lane has
    recently sent in ``PREFETCH_SECONDS``, so that a claiming transaction
    serves many attempts and the senders rarely wait for one.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: DeliveryConfig,
    ) -> None:
        self._sessions = sessions
        # The claim and the recorder run Core statements only, so they use
        # connections directly, without the ORM session's bookkeeping.
        self._engine = cast(AsyncEngine, sessions.kw["bind"])
        self._config = config
        self._wake = asyncio.Event()
        self._lanes = {env: Lane(env) for env in ENVIRONMENTS}
        self._handing_back: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Queue[Finished | Claim | None] = asyncio.Queue(
            maxsize=2 * RECORD_BATCH + config.concurrency * len(self._lanes)
        )
        self._recorders: list[asyncio.Task[None]] = []
        # Manual retries have their own connections, at most MANUAL_RETRIES.
        self._manual_http: aiohttp.ClientSession | None = None
        self._manual_running = 0
        self._stopping = False

    async def start(self) -> None:
        """Open the HTTP client; start the senders and the recorders."""
        self._manual_http = http_session(MANUAL_RETRIES)
        # Several recorders, so that one writes while another gathers a batch.
        self._recorders = [
            asyncio.create_task(self._record_loop(), name=f"recorder-{n}")
            for n in range(RECORDERS)
        ]
        for lane in self._lanes.values():
            lane.http = http_session(self._config.concurrency)
            lane.senders = [
                asyncio.create_task(
                    self._send_loop(lane), name=f"sender-{lane.env}-{n}"
                )
                for n in range(self._config.concurrency)
            ]

    async def close(self) -> None:
        """Finish the attempts in flight, hand back unsent ones, close the client.

        POSTs still running after SHUTDOWN_GRACE seconds are cut off.
        """
        self._stopping = True
        self._wake.set()
        lanes = list(self._lanes.values())
        for lane in lanes:
            while lane.claims:
                await asyncio.gather(*list(lane.claims), return_exceptions=True)
        unsent = [claim for lane in lanes for claim in lane.take_queued()]
        for lane in lanes:
            for _ in lane.senders:
                lane.ready.put_nowait(None)
        senders = [task for lane in lanes for task in lane.senders]
        if senders:
            _, hanging = await asyncio.wait(senders, timeout=SHUTDOWN_GRACE)
            posting = sum(lane.posting for lane in lanes)
            if posting:
                log.warning(
                    "delivery attempts cut off by shutdown count=%d; lease recovery"
                    " records them as interrupted",
                    posting,
                )
            for task in hanging:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        for lane in lanes:
            lane.senders = []
        if self._recorders:
            await asyncio.gather(*list(self._handing_back), return_exceptions=True)
            for claim in unsent:
                await self._finished.put(claim)
            for _ in self._recorders:
                await self._finished.put(None)
            await asyncio.gather(*self._recorders, return_exceptions=True)
            self._recorders = []
        for http in [self._manual_http, *(lane.http for lane in lanes)]:
            if http is not None:
                await http.close()
        self._manual_http = None
        for lane in lanes:
            lane.http = None

    @asynccontextmanager
    async def endpoint_change(self, env: str) -> AsyncIterator[None]:
        """Wrap a change of the endpoint of ``env``, then hand back its queued attempts.

        A claim that read the old settings can end after the change has
        committed, so claims in progress on entry go back too.
        """
        self._expire_claims(env)
        try:
            yield
        finally:
            self.endpoint_changed(env)

    def _expire_claims(self, env: str) -> None:
        """Make the claims of ``env`` in progress go back once they end."""
        lane = self._lanes.get(env)
        if lane is not None:
            lane.version += 1

    def endpoint_changed(self, env: str) -> None:
        """Hand back the queued attempts of ``env``, claimed with its old settings.

        They are claimed again with the endpoint's new URL and secret, or
        cancelled if it is now disabled. Other processes are not notified: their
        queued attempts go out within their start window.
        """
        lane = self._lanes.get(env)
        if lane is None:
            return
        # A claim in progress may have read the old settings, so
        # _claim_ahead compares the version before and after it.
        self._expire_claims(env)
        stale = lane.take_queued()
        if stale:
            task = asyncio.create_task(self._hand_back(stale))
            self._handing_back.add(task)
            task.add_done_callback(self._handing_back.discard)
        self.wake([env])

    async def _hand_back(self, claims: list[Claim]) -> None:
        for claim in claims:
            await self._finished.put(claim)

    def wake(self, envs: Collection[str] | None = None) -> None:
        """Look for due deliveries now instead of at the next poll.

        With ``envs``, only the lanes of those environments look.
        """
        for lane in self._lanes.values():
            if envs is None or lane.env in envs:
                lane.drained = False
        self._wake.set()

    async def run(self) -> None:
        """Claim deliveries for the senders until stopped or cancelled."""
        next_recovery = 0.0
        while not self._stopping:
            # Cleared before the room is counted, so an attempt that ends
            # from here on wakes the wait below.
            self._wake.clear()
            if time.monotonic() >= next_recovery:
                if await self._guarded(self.recover_interrupted(), "recovery"):
                    self.wake()
                next_recovery = time.monotonic() + self._config.recovery_interval
            claiming = False
            for lane in self._lanes.values():
                limit = lane.claim_limit(self._config.concurrency)
                if limit > 0 and not self._stopping:
                    # A task of its own, not awaited here: once a claim
                    # commits, its attempts must reach the senders even if
                    # this loop is cancelled, or they wait for the lease. Up
                    # to PARALLEL_CLAIMS claims of a lane overlap, each on
                    # its own connection.
                    lane.requested += limit
                    task = asyncio.create_task(self._claim_ahead(lane, limit))
                    lane.claims.add(task)
                    task.add_done_callback(lane.claims.discard)
                    claiming = True
            if claiming:
                continue
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for can
            # swallow a cancellation that arrives as the wait ends, and the
            # server's stop would then wait for this loop forever.
            try:
                async with asyncio.timeout(self._config.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                # Retries come due with time alone, so look again.
                for lane in self._lanes.values():
                    lane.drained = False

    async def _guarded(self, work: Awaitable[Any], what: str) -> Any:
        """Await database work, logging a failure and pausing instead of raising."""
        try:
            return await work
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            log.warning("delivery %s failed error=%s", what, exc)
            await asyncio.sleep(1.0)
            return None

    async def _claim_ahead(self, lane: Lane, limit: int) -> None:
        """Claim up to ``limit`` deliveries of a lane into its ready queue."""
        version = lane.version
        try:
            claims = await self._guarded(self._claim(lane.env, limit), "claim") or []
        finally:
            lane.requested -= limit
        if lane.version == version:
            for claim in claims:
                lane.ready.put_nowait(claim)
        else:
            # The endpoint changed during the claim: hand them all back.
            for claim in claims:
                await self._finished.put(claim)
        # A short claim found every due delivery; wait for a reason to look
        # again instead of claiming after every POST.
        lane.drained = len(claims) < limit
        self._wake.set()

    async def _claim(self, env: str, limit: int) -> list[Claim]:
        """Claim due deliveries and write their attempts, in one transaction."""
        # Read before the claim, so the window closes before the lease
        # that the database counts from its own later now().
        start_by = time.monotonic() + self._config.start_window
        async with self._engine.connect() as session:
            rows = (
                await session.execute(
                    CLAIM_SQL,
                    {"env": env, "limit": limit, "lease": self._config.lease},
                )
            ).all()
            claims = [signed_claim(*row, trigger="automatic") for row in rows]
            if claims:
                await insert_attempts(session, claims)
            await session.commit()
        for claim in claims:
            claim.start_by = start_by
        return claims

    async def _send_loop(self, lane: Lane) -> None:
        """POST a lane's claimed attempts one at a time until a ``None`` arrives."""
        while (claim := await lane.ready.get()) is not None:
            if time.monotonic() > claim.start_by:
                # Too late to finish within the lease: hand it back unsent.
                await self._finished.put(claim)
                continue
            lane.posting += 1
            try:
                outcome = await self._post(claim, lane.http)
            finally:
                lane.posting -= 1
            lane.sent.count += 1
            if not lane.drained and lane.held() <= lane.refill_at:
                self._wake.set()
            await self._finished.put(Finished(claim, outcome))

    async def _send(self, claim: Claim) -> tuple[Outcome, asyncio.Future[str]]:
        """POST a manual attempt and hand its outcome to the recorder.

        The returned future resolves to the delivery's new status once the
        outcome is committed.
        """
        outcome = await self._post(claim, self._manual_http)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self._finished.put(Finished(claim, outcome, done))
        return outcome, done

    async def _post(self, claim: Claim, http: aiohttp.ClientSession | None) -> Outcome:
        assert http is not None
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            async with http.post(
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
        """Write finished attempts in batches until a ``None`` arrives.

        A ``Claim`` in the queue is an attempt handed back unsent.
        """
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            batch: list[Finished | Claim] = []
            item = await self._finished.get()
            # A small batch waits up to RECORD_LINGER for company, so that
            # a busy worker spends one transaction on many attempts. A
            # manual retry's caller is waiting, so its batch goes at once.
            deadline = loop.time() + RECORD_LINGER
            while item is not None:
                batch.append(item)
                if len(batch) >= RECORD_BATCH:
                    break
                if not self._finished.empty():
                    item = self._finished.get_nowait()
                    continue
                if len(batch) >= RECORD_BATCH // 4 or is_manual(item):
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await self._finished.get()
                except TimeoutError:
                    break
            stop = item is None
            if not batch:
                continue
            try:
                await self._record(batch)
            except Exception as exc:
                log.exception("delivery outcomes not recorded count=%d", len(batch))
                settle(batch, error=exc)

    async def _record(self, batch: list[Finished | Claim]) -> None:
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
                    settle(batch, error=exc)
                    return
                await asyncio.sleep(0.2 * attempt)
                continue
            settle(batch, statuses=statuses)
            # A recorded outcome can make the next event of an order due.
            self.wake({item_env(item) for item in batch})
            return

    async def _write(self, batch: list[Finished | Claim]) -> dict[str, str]:
        """Record outcomes and move their deliveries on, in one transaction."""
        now = datetime.now(UTC)
        # Recorders, in this process or others, write disjoint deliveries
        # except after lease recovery. A deadlock between them raises a
        # DBAPIError, and _record tries the batch again.
        finished = [i for i in batch if isinstance(i, Finished)]
        unsent = [i for i in batch if isinstance(i, Claim)]
        gone_envs = {i.claim.env for i in finished if i.outcome.http_status == 410}
        for env in gone_envs:
            self._expire_claims(env)  # this transaction disables the endpoint
        statuses: dict[str, str] = {}
        async with self._engine.connect() as session:
            # Losing this commit in a database crash is safe: the attempt
            # stays in flight and lease recovery sends it again.
            await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            if unsent:
                await session.execute(
                    RELEASE_SQL,
                    json_rows(
                        [
                            {"delivery_id": c.delivery_id, "number": c.number}
                            for c in unsent
                        ]
                    ),
                )
            if finished:
                await session.execute(
                    ATTEMPT_DONE_SQL,
                    {
                        "finished_at": now,
                        **json_rows([attempt_values(i) for i in finished]),
                    },
                )
            delivered = [i for i in finished if i.outcome.ok]
            failed = [i for i in finished if not i.outcome.ok]
            if delivered:
                rows = [
                    {
                        "delivery_id": i.claim.delivery_id,
                        "number": i.claim.number,
                        "http_status": i.outcome.http_status,
                    }
                    for i in delivered
                ]
                await session.execute(DELIVERED_SQL, {"now": now, **json_rows(rows)})
                statuses.update((i.claim.delivery_id, "delivered") for i in delivered)
            if failed:
                statuses.update(await self._advance_failed(session, failed, now))
            await session.commit()
        # A 410 disabled its endpoint: the queued attempts go back unsent.
        for env in gone_envs:
            self.endpoint_changed(env)
        if unsent:
            log.info("delivery attempts handed back unsent count=%d", len(unsent))
        return statuses

    async def _advance_failed(
        self, session: AsyncConnection, failed: list[Finished], now: datetime
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
        if self._manual_http is None or not self._recorders:
            raise DeliveryUnavailable(
                "the delivery worker is not running; start Ventra with its worker",
                code="worker_stopped",
                http_status=503,
            )
        claim = await self._claim_manual(event_id)
        try:
            outcome, done = await self._send(claim)
        finally:
            self._manual_running -= 1
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

    async def _claim_manual(self, event_id: str) -> Claim:
        """Claim a manual attempt of ``event_id`` in one of the MANUAL_RETRIES slots.

        The caller frees the slot once the POST has ended.
        """
        async with self._sessions() as session:
            delivery_id = await session.scalar(MANUAL_LOCK_SQL, {"event_id": event_id})
            if delivery_id is None:
                raise NotFound(f"event {event_id!r} not found", event_id=event_id)
            row = (await session.execute(MANUAL_CLAIM_SQL, {"id": delivery_id})).one()
            check_retryable(event_id, row)
            self._take_manual_slot(event_id)
            try:
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
            except BaseException:
                self._manual_running -= 1
                raise
        return claim

    def _take_manual_slot(self, event_id: str) -> None:
        """Count one more manual retry in flight, or raise 429 when all are taken."""
        if self._manual_running >= MANUAL_RETRIES:
            raise DeliveryUnavailable(
                f"{MANUAL_RETRIES} manual retries are in flight, the maximum at once;"
                f" send the retry of {event_id} again when one has ended",
                code="too_many_retries",
                http_status=429,
                event_id=event_id,
            )
        self._manual_running += 1

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
        self.wake([env])
        count = cast(CursorResult[Any], result).rowcount or 0
        log.info(
            "bulk retry queued env=%s since=%s count=%d", env, since.isoformat(), count
        )
        return count
