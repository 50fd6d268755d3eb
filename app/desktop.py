"""Start the window: servers on their own thread, the window on qasync."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.config import Settings
from app.stack import BackgroundStack, Stack, StackInfo
from app.ui.client import Endpoints

log = logging.getLogger("ui")


class StackStarter(QObject):
    """Start the servers off the Qt thread and report back by signal."""

    started = Signal(object)
    failed = Signal(str)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.background = BackgroundStack(Stack(settings))

    def start(self) -> None:
        threading.Thread(target=self._run, name="stack-start", daemon=True).start()

    def _run(self) -> None:
        try:
            info = self.background.start()
        except Exception as exc:
            log.exception("servers failed to start")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.started.emit(info)


def endpoints_for(info: StackInfo) -> Endpoints:
    """Return what the window needs to reach the running servers."""
    return Endpoints(
        ventra_url=info.ventra_url or "",
        sim_url=info.sim_url or "",
        api_key=info.api_key,
        sim_token=info.sim_token or "",
        database=info.database,
    )


def open_window(info: StackInfo) -> object:
    """Create and show the main window for running servers."""
    from app.ui.client import ApiClient
    from app.ui.main_window import MainWindow

    window = MainWindow(ApiClient(endpoints_for(info)))
    window.show()
    window.start()
    return window


def has_display() -> bool:
    """Tell whether Qt can open a window here."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    )


def run_window(settings: Settings) -> int:
    """Run the desktop app until its window closes, or SIGINT or SIGTERM."""
    import qasync

    if not has_display():
        print(
            "ventra: no display found (DISPLAY and WAYLAND_DISPLAY are unset);"
            " run the servers alone with `ventra serve`, or set"
            " QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 2

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("Ventra")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    starter = StackStarter(settings)
    closed = asyncio.Event()
    state: dict[str, object] = {}

    def started(info: StackInfo) -> None:
        window = open_window(info)
        state["window"] = window
        app.lastWindowClosed.connect(closed.set)

    def failed(message: str) -> None:
        QMessageBox.critical(None, "Ventra could not start", message)
        state["failed"] = True
        closed.set()

    def interrupted(signum: int, _frame: object) -> None:
        log.info("signal received signum=%d; closing the window", signum)
        closed.set()

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    # Python runs signal handlers only between bytecodes; this timer gives
    # it a moment of control while Qt waits in its own C++ loop.
    keepalive = QTimer()
    keepalive.timeout.connect(lambda: None)
    keepalive.start(250)

    starter.started.connect(started)
    starter.failed.connect(failed)
    starter.start()
    with loop:
        loop.run_until_complete(closed.wait())
        keepalive.stop()
        window = state.get("window")
        if window is not None:
            window.close()  # type: ignore[attr-defined]
            loop.run_until_complete(window.client.close())  # type: ignore[attr-defined]
    starter.background.stop()
    log.info("stopped")
    return 1 if state.get("failed") else 0
