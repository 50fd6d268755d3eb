"""A stack shared by the tests of one module, for checks that change little.

Starting Ventra and VentraSim for each test takes half a second or more.
Tables of bad requests and the property tests send hundreds of requests
that do not depend on each other's state, so they share one stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from app.core.config import Settings
from app.stack import BackgroundStack, Stack
from tests.conftest import Databases, RunningStack, _admin, _drop


@contextmanager
def module_stack(
    pg_server: URL,
    templates: dict[str, str],
    data_dir: Path,
) -> Iterator[RunningStack]:
    """Start Ventra and VentraSim on fresh databases; stop and drop them after."""
    prefix = f"vt_{uuid.uuid4().hex[:10]}"
    names = {side: f"{prefix}_{side}" for side in templates}
    with _admin(pg_server) as conn:
        for side, template in templates.items():
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(names[side]), sql.Identifier(template)
                )
            )
            # These tests commit thousands of small transactions and never
            # need them to survive a crash, so skip the flush to disk.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                    sql.Identifier(names[side])
                )
            )
    databases = Databases(
        server=pg_server,
        ventra=pg_server.set(database=names["ventra"]),
        sim=pg_server.set(database=names["sim"]),
    )
    settings = Settings(data_dir=data_dir, ventra_port=0, sim_port=0)
    background = BackgroundStack(
        Stack(
            settings,
            ventra_db=databases.ventra,
            sim_db=databases.sim,
        )
    )
    try:
        info = background.start()
        running = RunningStack.connect(info, background, databases, data_dir)
        with running.ventra, running.sim:
            yield running
    finally:
        background.stop()
        for name in names.values():
            _drop(pg_server, name)


@pytest.fixture(scope="module")
def shared_stack(
    pg_server: URL,
    templates: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningStack]:
    """Ventra and VentraSim on fresh databases, for every test of a module."""
    with module_stack(pg_server, templates, tmp_path_factory.mktemp("shared")) as stack:
        yield stack
