"""Webhook endpoints: one per environment, each with a URL, secret and switch."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, cast

import aiohttp
from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.core.config import ENVIRONMENTS
from app.core.signatures import fingerprint, generate_secret
from app.ventra.errors import NotFound
from app.ventra.models import Delivery, WebhookEndpoint

log = logging.getLogger("ventra.endpoints")


def endpoint_json(endpoint: WebhookEndpoint, reveal_secret: bool = True) -> dict[str, Any]:
    """Return the API view of an endpoint.

    The platform's API shows the secret to its own key holder, as a
    dashboard does, so the merchant can copy it; logs never do.
    """
    body: dict[str, Any] = {
        "env": endpoint.env,
        "url": endpoint.url,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "secret_fingerprint": fingerprint(endpoint.secret),
        "updated_at": endpoint.updated_at.isoformat(),
    }
    if reveal_secret:
        body["secret"] = endpoint.secret
    return body


class EndpointService:
    """Read and change the webhook endpoints."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def ensure_defaults(
        self,
        url: str | None,
        secret: str | None,
        sim_secrets: dict[str, str] | None = None,
    ) -> None:
        """Create the endpoint rows that are missing, with the configured defaults.

        The secret of a new row is ``WEBHOOK_SECRET`` when set, else the one
        VentraSim stores for that environment, else a generated one.
        """
        now = datetime.now(timezone.utc)
        sim_secrets = sim_secrets or {}
        async with self._sessions() as session:
            for env in ENVIRONMENTS:
                await session.execute(
                    insert(WebhookEndpoint)
                    .values(
                        env=env,
                        url=url,
                        secret=secret or sim_secrets.get(env) or generate_secret(),
                        enabled=True,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["env"])
                )
            await session.commit()

    async def list(self) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.env))
            return [endpoint_json(e) for e in rows]

    async def get(self, env: str) -> WebhookEndpoint:
        async with self._sessions() as session:
            endpoint = await session.get(WebhookEndpoint, env)
        if endpoint is None:
            raise NotFound(f"environment {env!r} not found; use one of {', '.join(ENVIRONMENTS)}")
        return endpoint

    async def update(
        self,
        env: str,
        *,
        url: str | None = None,
        secret: str | None = None,
        enabled: bool | None = None,
        clear_url: bool = False,
    ) -> dict[str, Any]:
        """Change an endpoint; disabling it cancels its pending deliveries."""
        now = datetime.now(timezone.utc)
        async with self._sessions() as session:
            endpoint = await session.get(WebhookEndpoint, env, with_for_update=True)
            if endpoint is None:
                raise NotFound(
                    f"environment {env!r} not found; use one of {', '.join(ENVIRONMENTS)}"
                )
            if url is not None or clear_url:
                endpoint.url = url
            if secret is not None:
                endpoint.secret = secret
            if enabled is not None:
                endpoint.enabled = enabled
                endpoint.disabled_reason = None if enabled else "disabled by request"
            endpoint.updated_at = now
            cancelled = 0
            if enabled is False:
                cancelled = await cancel_pending(session, env, now)
            await session.commit()
            log.info(
                "endpoint updated env=%s enabled=%s url=%s secret_fingerprint=%s"
                " cancelled=%d",
                env, endpoint.enabled, endpoint.url, fingerprint(endpoint.secret), cancelled,
            )
            return endpoint_json(endpoint)


async def cancel_pending(
    session: AsyncSession | AsyncConnection, env: str, now: datetime
) -> int:
    """Cancel the pending deliveries of an environment; return how many."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(Delivery)
            .where(Delivery.env == env, Delivery.status == "pending")
            .values(status="cancelled", next_attempt_at=None, updated_at=now)
        ),
    )
    return result.rowcount or 0


async def fetch_sim_secrets(base_url: str, token: str | None) -> dict[str, str]:
    """Read the secret VentraSim stores for each environment.

    Ventra sends ``VENTRA_INTERNAL_TOKEN`` as the bearer token of VentraSim's
    ``GET /api/endpoints``, so it must equal VentraSim's management token. A
    VentraSim that cannot be reached yields no secrets, and the caller falls
    back to generating them.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=5)
    url = f"{base_url.rstrip('/')}/api/endpoints"
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=timeout) as http,
            http.get(url, headers=headers) as response,
        ):
            response.raise_for_status()
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("webhook secrets not resolved from ventrasim url=%s error=%s", url, exc)
        return {}
    found = {
        item["env"]: item["secret"]
        for item in body.get("data", [])
        if isinstance(item, dict)
        and item.get("env") in ENVIRONMENTS
        and isinstance(item.get("secret"), str)
        and item["secret"]
    }
    log.info(
        "webhook secrets resolved from ventrasim url=%s envs=%s",
        url,
        ",".join(sorted(found)),
    )
    return found
