"""``ventra serve --only ventra`` as a child process, for crash and scale tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import URL

from app.core.config import KNOWN_VARIABLES
from tests.conftest import Databases

REPO = Path(__file__).resolve().parents[2]
API_KEY = "process-test-api-key"
READY_SECONDS = 30.0


def server_url(databases: Databases) -> str:
    """Return the URL whose database name makes serve use the test's databases.

    An external server URL naming database NAME makes the platform use
    NAME_ventra, which is how the fixture named the test's database.
    """
    name = databases.ventra.database or ""
    prefix = name.removesuffix("_ventra")
    url: URL = databases.server.set(database=prefix, drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Serve:
    """One ``ventra serve`` process at a time, restartable, logs kept on disk."""

    def __init__(self, database_url: str, work_dir: Path, timeout: float = 2.0) -> None:
        self.database_url = database_url
        self.work_dir = work_dir
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.starts = 0
        work_dir.mkdir(parents=True, exist_ok=True)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in KNOWN_VARIABLES}
        env["API_KEY"] = API_KEY
        env["PYTHONPATH"] = str(REPO)
        return env

    def spawn(self) -> None:
        """Start the process without waiting for it to listen."""
        assert self.process is None
        self.starts += 1
        self.url = None
        log = open(self.work_dir / f"stderr-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--only",
                "ventra",
                "--ventra-port",
                "0",
                "--database-url",
                self.database_url,
                "--data-dir",
                str(self.work_dir / "data"),
                "--retry-schedule",
                "fast",
                "--delivery-timeout",
                str(self.timeout),
            ],
            cwd=self.work_dir,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()

    def wait_ready(self) -> str:
        """Read the ready line and return Ventra's URL."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + READY_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.2):
                    line = self.process.stdout.readline()
                    if not line:
                        break
                    self.url = json.loads(line)["ventra_url"]
                    return self.url
        raise AssertionError(f"serve printed no ready line; see {self.work_dir}")

    def start(self) -> str:
        self.spawn()
        return self.wait_ready()

    def kill(self) -> None:
        """Stop the process with SIGKILL, as a crash would."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def stop(self) -> None:
        """Stop the process with SIGTERM, or SIGKILL when it does not exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def logs(self) -> str:
        """Return the stderr of every run so far."""
        return "".join(
            path.read_text("utf-8", "replace")
            for path in sorted(self.work_dir.glob("stderr-*.log"))
        )
