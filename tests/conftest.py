"""Shared fixtures: a real PostgreSQL, per-test databases, running servers.

The suite runs against the embedded PostgreSQL, or against the server named
by ``VENTRA_TEST_DATABASE_URL``. Each test gets fresh databases copied from
migrated templates, and its own Ventra and VentraSim on free ports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from app.core.config import Settings
from app.core.database import (
    EmbeddedPostgres,
    libpq_conninfo,
    parse_database_url,
)
from app.core.migrations import upgrade
from app.stack import BackgroundStack, Stack, StackInfo

TEST_DATABASE_ENV = "VENTRA_TEST_DATABASE_URL"
_PRIVATE_BASETEMP: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Give each run a temporary folder of its own.

    pytest's shared numbered folders are pruned by any other run that
    starts, which would delete a running embedded PostgreSQL's files.
    """
    if config.option.basetemp is None:
        folder = tempfile.mkdtemp(prefix="ventra-pytest-")
        config.option.basetemp = folder
        _PRIVATE_BASETEMP.append(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _PRIVATE_BASETEMP:
        shutil.rmtree(folder, ignore_errors=True)


def _admin(server: URL) -> psycopg.Connection:
    return psycopg.connect(
        libpq_conninfo(server.set(database="postgres")), autocommit=True
    )


def _drop(server: URL, name: str) -> None:
    with _admin(server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """A PostgreSQL server URL: external when configured, else embedded."""
    external = os.environ.get(TEST_DATABASE_ENV)
    if external:
        yield parse_database_url(external).set(drivername="postgresql+psycopg")
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded"))
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def templates(pg_server: URL) -> Iterator[dict[str, str]]:
    """Migrated template databases of both sides."""
    prefix = f"vt_tpl_{uuid.uuid4().hex[:8]}"
    names = {"ventra": f"{prefix}_ventra", "sim": f"{prefix}_sim"}
    with _admin(pg_server) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    for side, name in names.items():
        upgrade(side, pg_server.set(database=name))
    try:
        yield names
    finally:
        for name in names.values():
            _drop(pg_server, name)


@dataclass
class Databases:
    """A pair of fresh databases for one test."""

    server: URL
    ventra: URL
    sim: URL

    def ventra_conn(self) -> psycopg.Connection:
        return psycopg.connect(libpq_conninfo(self.ventra), autocommit=True)

    def sim_conn(self) -> psycopg.Connection:
        return psycopg.connect(libpq_conninfo(self.sim), autocommit=True)


@pytest.fixture
def databases(pg_server: URL, templates: dict[str, str]) -> Iterator[Databases]:
    """Fresh databases copied from the templates, dropped after the test."""
    prefix = f"vt_{uuid.uuid4().hex[:10]}"
    created = {}
    with _admin(pg_server) as conn:
        for side, template in templates.items():
            name = f"{prefix}_{side}"
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
            created[side] = name
    try:
        yield Databases(
            server=pg_server,
            ventra=pg_server.set(database=created["ventra"]),
            sim=pg_server.set(database=created["sim"]),
        )
    finally:
        for name in created.values():
            _drop(pg_server, name)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class RunningStack:
    """Servers started for one test, with HTTP clients for both APIs."""

    info: StackInfo
    background: BackgroundStack
    databases: Databases
    data_dir: Path
    ventra: httpx.Client
    sim: httpx.Client

    @classmethod
    def connect(
        cls,
        info: StackInfo,
        background: BackgroundStack,
        databases: Databases,
        data_dir: Path,
    ) -> RunningStack:
        """Wrap started servers with HTTP clients holding their credentials."""
        return cls(
            info=info,
            background=background,
            databases=databases,
            data_dir=data_dir,
            ventra=httpx.Client(
                base_url=info.ventra_url or "",
                headers={"x-api-key": info.api_key},
                timeout=30,
            ),
            sim=httpx.Client(
                base_url=info.sim_url or "",
                headers={"Authorization": f"Bearer {info.sim_token}"},
                timeout=30,
            ),
        )

    def create_order(self, amount: int = 1999, **fields: Any) -> dict[str, Any]:
        response = self.ventra.post("/v1/orders", json={"amount": amount, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def paid_order(self, amount: int = 1999, **fields: Any) -> dict[str, Any]:
        order = self.create_order(amount, **fields)
        response = self.ventra.post(f"/v1/orders/{order['id']}/pay")
        assert response.status_code == 200, response.text
        return response.json()

    def sim_events(self, **params: Any) -> list[dict[str, Any]]:
        response = self.sim.get("/api/events", params={"limit": 500, **params})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def set_mode(self, env: str, mode: str, **options: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if options:
            body["options"] = options
        response = self.sim.put(f"/api/endpoints/{env}", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture
def stack_factory(
    databases: Databases, tmp_path: Path
) -> Iterator[Callable[..., RunningStack]]:
    """Start Ventra and VentraSim on free ports; stop them after the test."""
    started: list[RunningStack] = []

    def start(**changes: Any) -> RunningStack:
        hooks = changes.pop("ventra_hooks", None)
        data_dir = tmp_path / f"data{len(started)}"
        settings = Settings(data_dir=data_dir, ventra_port=0, sim_port=0).with_changes(
            **changes
        )
        background = BackgroundStack(
            Stack(
                settings,
                ventra_db=databases.ventra,
                sim_db=databases.sim,
                ventra_hooks=hooks,
            )
        )
        info = background.start()
        running = RunningStack.connect(info, background, databases, data_dir)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.ventra.close()
        running.sim.close()
        running.background.stop()


@pytest.fixture
def stack(stack_factory: Callable[..., RunningStack]) -> RunningStack:
    """Ventra and VentraSim wired together, with the fast retry schedule."""
    return stack_factory()
