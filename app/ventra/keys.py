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
        self._cached: tuple[int, str | None] | None = None

    def current(self) -> str | None:
        """Return the key in force, or None while the rotated file is damaged.

        A damaged file fails closed: falling back to the configured key
        would bring back ``dev-secret`` after a rotation.
        """
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._cached = None
            return self._configured
        if self._cached is None or self._cached[0] != mtime:
            self._cached = (mtime, self._read())
        return self._cached[1]

    def _read(self) -> str | None:
        try:
            key = json.loads(self.path.read_text(encoding="utf-8"))["api_key"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Logged once per change of the file, not once per request.
            log.error(
                "api key file unreadable, every key is rejected until it is fixed"
                " or deleted path=%s error=%s",
                self.path,
                type(exc).__name__,
            )
            return None
        if not isinstance(key, str) or not key:
            log.error(
                "api key file has no api_key string, every key is rejected until"
                " it is fixed or deleted path=%s",
                self.path,
            )
            return None
        return key

    def matches(self, candidate: str | None) -> bool:
        """Compare ``candidate`` with the key in force, in constant time."""
        current = self.current()
        if candidate is None or current is None:
            return False
        return hmac.compare_digest(
            current.encode("utf-8"), candidate.encode("utf-8", "surrogateescape")
        )

    def rotate(self, new_key: str | None = None) -> str:
        """Store a new key (generated when none is given) and return it."""
        key = new_key or "vk_" + secrets.token_urlsafe(32)
        write_private_file(self.path, json.dumps({"api_key": key}))
        self._cached = None
        log.info("api key rotated path=%s", self.path)
        return key
