"""``ventra ledger verify``: check the ledger invariants from the command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import psycopg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.core.config import Settings
from app.core.database import (
    EmbeddedPostgres,
    create_engine,
    parse_database_url,
    redact,
    side_urls,
)
from app.ventra import ledger

log = logging.getLogger("ventra.ledger")

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_UNREACHABLE = 2


async def check(url: URL) -> dict[str, Any]:
    """Run the ledger checks on the platform database at ``url``."""
    engine = create_engine(url)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            return await ledger.verify(session)
    finally:
        await engine.dispose()


async def verify_ledger(settings: Settings) -> int:
    """Print the ledger check as JSON and return the exit code.

    The code is 0 when every invariant holds, 1 on a violation, and 2 when
    the database cannot be read.

    The embedded PostgreSQL is started when ``DATABASE_URL`` is unset, and
    stopped again only if this command was the one that started it, so a
    running app keeps its database.
    """
    embedded: EmbeddedPostgres | None = None
    started_here = False
    if settings.database_url:
        url, _ = side_urls(parse_database_url(settings.database_url), embedded=False)
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        if not (embedded.pgdata / "PG_VERSION").exists():
            # Starting would create an empty database cluster here.
            print(
                f"ventra: no Ventra data in {settings.data_dir}; pass the data"
                " directory the app uses (--data-dir), or --database-url",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
        started_here = not (embedded.pgdata / "postmaster.pid").exists()
        url, _ = side_urls(await asyncio.to_thread(embedded.start), embedded=True)
    try:
        result = await check(url)
    except (DBAPIError, psycopg.Error, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"ventra: cannot read the ledger at {redact(url)}: {reason};"
            " start the app once so its database exists, or check DATABASE_URL",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    finally:
        if embedded is not None and started_here:
            await asyncio.to_thread(embedded.stop)

    print(json.dumps(result, indent=2))
    if not result["ok"]:
        log.error("ledger verify found violations count=%d", len(result["violations"]))
        return EXIT_VIOLATION
    return EXIT_OK
