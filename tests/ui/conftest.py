"""Fixtures for window tests: a qasync loop over pytest-qt's application."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from app.desktop import endpoints_for
from app.ui.client import ApiClient
from app.ui.main_window import MainWindow
from tests.conftest import RunningStack


@pytest.fixture(scope="session")
def session_loop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """One qasync event loop for all window tests, as the app has one."""
    loop = qasync.QEventLoop(qapp, already_running=False)
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def qloop(session_loop: qasync.QEventLoop) -> Iterator[qasync.QEventLoop]:
    """The qasync loop, with every task of the test ended afterwards."""
    asyncio.set_event_loop(session_loop)
    try:
        yield session_loop
    finally:
        pending = [t for t in asyncio.all_tasks(session_loop) if not t.done()]
        for task in pending:
            task.cancel()
        session_loop.run_until_complete(
            asyncio.gather(*pending, return_exceptions=True)
        )
        asyncio.set_event_loop(None)


@pytest.fixture
def window(qtbot, qloop: qasync.QEventLoop, stack: RunningStack) -> Iterator[MainWindow]:
    """The main window connected to a running stack."""
    client = ApiClient(endpoints_for(stack.info))
    main = MainWindow(client)
    qtbot.addWidget(main)
    main.show()
    yield main
    main.close()
    qloop.run_until_complete(client.close())
    qtbot.wait(10)
