"""Receiving endpoints per environment: secret and failure mode, cached."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ENVIRONMENTS
from app.core.signatures import fingerprint
from app.sim.errors import NotFound, ValidationFailed
from app.sim.models import EndpointSetting
from app.sim.modes import MODES, ModeSettings, validate_options

log = logging.getLogger("sim.endpoints")


def setting_json(setting: EndpointSetting) -> dict[str, Any]:
    """Return the API view of one environment's settings."""
    return {
        "env": setting.env,
        "mode": setting.mode,
        "options": setting.options,
        "mode_summary": ModeSettings(setting.mode, dict(setting.options)).summary,
        "secret": setting.secret,
        "secret_fingerprint": fingerprint(setting.secret) if setting.secret else None,
        "updated_at": setting.updated_at.isoformat(),
    }


class EndpointRegistry:
    """The settings in force, kept in memory and written through to the database.

    The receiver reads them on every request, so a change of mode or secret
    applies to the next request without a database round trip.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._settings: dict[str, EndpointSetting] = {}
        # Built once per change, because the receiver reads it on every request.
        self._modes: dict[str, ModeSettings] = {}

    async def load(self) -> None:
        """Create the rows of missing environments and read all settings."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            for env in ENVIRONMENTS:
                await session.execute(
                    insert(EndpointSetting)
                    .values(
                        env=env, secret=None, mode="normal", options={}, updated_at=now
                    )
                    .on_conflict_do_nothing(index_elements=["env"])
                )
            await session.commit()
            rows = await session.scalars(select(EndpointSetting))
            self._settings = {row.env: row for row in rows}
        self._modes = {
            env: ModeSettings(row.mode, dict(row.options))
            for env, row in self._settings.items()
        }

    def secret(self, env: str) -> str | None:
        """Return the secret in force for ``env``, or None when unset."""
        setting = self._settings.get(env)
        return setting.secret if setting else None

    def mode(self, env: str) -> ModeSettings:
        """Return the failure mode in force for ``env``."""
        return self._modes.get(env) or ModeSettings()

    def list(self) -> list[dict[str, Any]]:
        """Return the API view of every environment's settings."""
        return [setting_json(self._settings[env]) for env in ENVIRONMENTS]

    async def update(
        self,
        env: str,
        *,
        secret: str | None = None,
        mode: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate and store a change of secret or mode.

        Options given with a new mode replace the old mode's options; options
        given alone are merged into those of the mode in force.
        """
        if env not in ENVIRONMENTS:
            raise NotFound(
                f"environment {env!r} not found; use one of {', '.join(ENVIRONMENTS)}"
            )
        if secret is not None:
            check_secret(secret)
        if mode is not None and mode not in MODES:
            raise ValidationFailed(
                f"mode={mode!r} is unknown; use one of {', '.join(MODES)}", field="mode"
            )
        current = self._settings[env]
        target_mode = mode or current.mode
        try:
            clean = validate_options(target_mode, options or {})
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="options") from None

        async with self._sessions() as session:
            setting = await session.get(EndpointSetting, env, with_for_update=True)
            assert setting is not None
            if secret is not None:
                setting.secret = secret
            if mode is not None and mode != setting.mode:
                setting.mode = mode
                setting.options = clean
            elif clean:
                setting.options = {**setting.options, **clean}
            setting.updated_at = datetime.now(UTC)
            await session.commit()
            self._settings[env] = setting
            self._modes[env] = ModeSettings(setting.mode, dict(setting.options))
        log.info(
            "endpoint settings updated env=%s mode=%s secret_fingerprint=%s",
            env,
            setting.mode,
            fingerprint(setting.secret) if setting.secret else None,
        )
        return setting_json(setting)


def check_secret(secret: str) -> None:
    """Reject a secret that could never match what Ventra signs with."""
    if not secret:
        raise ValidationFailed(
            "secret is empty; paste the endpoint's secret", field="secret"
        )
    if secret != secret.strip():
        raise ValidationFailed(
            "secret has leading or trailing whitespace; the signature is keyed"
            " with the exact bytes of the secret, so it would never match."
            " Remove the whitespace and save again.",
            field="secret",
        )
    if not secret.isprintable():
        raise ValidationFailed(
            "secret contains control or unpaired surrogate characters; paste the"
            " endpoint's secret as Ventra shows it",
            field="secret",
        )
