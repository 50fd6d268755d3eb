"""Fixtures for window tests: a qasync loop over pytest-qt's application."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from app.ui.client import ApiClient, Endpoints
from app.ui.main_window import MainWindow
from tests.conftest import RunningStack


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """A qasync event loop driving Qt, as the app runs it."""
    loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def window(qtbot, qloop: qasync.QEventLoop, stack: RunningStack) -> Iterator[MainWindow]:
    """The main window connected to a running stack."""
    info = stack.info
    client = ApiClient(
        Endpoints(
            ventra_url=info.ventra_url or "",
            sim_url=info.sim_url or "",
            api_key=info.api_key,
            sim_token=info.sim_token or "",
            database=info.database,
        )
    )
    main = MainWindow(client)
    qtbot.addWidget(main)
    main.show()
    yield main
    main.close()
    qloop.run_until_complete(client.close())
