"""Alembic migrations, one history per side, applied at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import URL

log = logging.getLogger("ventra.migrations")

APP_DIR = Path(__file__).resolve().parent.parent
SIDES = ("ventra", "sim")

# Both sides take this advisory lock while migrating, so two processes that
# start on one database at once apply each revision once.
MIGRATION_LOCK_KEY = 0x56454E545241


def alembic_config(side: str, url: URL) -> Config:
    """Build the Alembic configuration of one side."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
    config = Config()
    config.set_main_option("script_location", str(APP_DIR / side / "migrations"))
    config.attributes["url"] = url
    return config


def upgrade(side: str, url: URL) -> None:
    """Apply every migration of ``side`` to the database at ``url``."""
    command.upgrade(alembic_config(side, url), "head")
    log.info("migrations applied side=%s database=%s", side, url.database)


def run_online(config: Config, target_metadata: MetaData) -> None:
    """Run migrations inside an Alembic ``env.py`` under the advisory lock."""
    from alembic import context

    url: URL = config.attributes["url"]
    engine = create_engine(url, poolclass=None)
    try:
        with engine.connect() as connection:
            connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            connection.commit()
            try:
                context.configure(
                    connection=connection, target_metadata=target_metadata
                )
                with context.begin_transaction():
                    context.run_migrations()
                connection.commit()
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"),
                    {"key": MIGRATION_LOCK_KEY},
                )
                connection.commit()
    finally:
        engine.dispose()
