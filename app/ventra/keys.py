"""The API key: configured, or rotated into ``.runtime/api_key.json``."""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from pathlib import Path

from app.core.config import write_private_file

log = logging.getLogger("ventra.api")


class ApiKeyStore:
    """The key in force; the rotated file wins while it exists.

    The file is read again whenever its modification time changes, so a
    rotation by another process on the same data directory also takes
    effect at once.
    """

    def __init__(self, configured: str, runtime_dir: Path) -> None:
        self._configured = configured
        self.path = runtime_dir / "api_key.json"
        self._cached: tuple[float, str] | None = None

    def current(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._cached = None
            return self._configured
        if self._cached is None or self._cached[0] != mtime:
            try:
                key = json.loads(self.path.read_text(encoding="utf-8"))["api_key"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("api key file unreadable path=%s error=%s", self.path, exc)
                return self._configured
            self._cached = (mtime, str(key))
        return self._cached[1]

    def matches(self, candidate: str | None) -> bool:
        """Compare ``candidate`` with the key in force, in constant time."""
        if candidate is None:
            return False
        return hmac.compare_digest(
            self.current().encode("utf-8"), candidate.encode("utf-8", "surrogateescape")
        )

    def rotate(self, new_key: str | None = None) -> str:
        """Store a new key (generated when none is given) and return it."""
        key = new_key or "vk_" + secrets.token_urlsafe(32)
        write_private_file(self.path, json.dumps({"api_key": key}))
        self._cached = None
        log.info("api key rotated path=%s", self.path)
        return key
