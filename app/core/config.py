"""Configuration from the environment, a ``.env`` file and the data directory."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import platformdirs
from dotenv import dotenv_values
from yarl import URL

ENVIRONMENTS = ("local", "sandbox", "staging")
DEFAULT_API_KEY = "dev-secret"
DEFAULT_VENTRA_PORT = 8000
DEFAULT_SIM_PORT = 3001
RETRY_SCHEDULES = ("fast", "realistic")

KNOWN_VARIABLES = (
    "API_KEY",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "VENTRASIM_BASE_URL",
    "VENTRA_INTERNAL_TOKEN",
    "VENTRASIM_TOKEN",
    "DATABASE_URL",
    "VENTRA_PORT",
    "VENTRASIM_PORT",
    "VENTRA_DATA_DIR",
    "VENTRA_RETRY_SCHEDULE",
    "VENTRA_DELIVERY_TIMEOUT",
)


class ConfigError(ValueError):
    """A configuration value that cannot be used, with the variable named."""


@dataclass(frozen=True)
class Settings:
    """Everything the servers need to start, resolved once at start-up."""

    data_dir: Path
    api_key: str = DEFAULT_API_KEY
    webhook_url: str | None = None
    webhook_secret: str | None = None
    ventrasim_base_url: str | None = None
    internal_token: str | None = None
    sim_token: str | None = None
    database_url: str | None = None
    host: str = "127.0.0.1"
    ventra_port: int = DEFAULT_VENTRA_PORT
    sim_port: int = DEFAULT_SIM_PORT
    retry_schedule: str = "fast"
    delivery_timeout: float = 10.0
    run_ventra: bool = True
    run_sim: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with the given fields replaced."""
        return replace(self, **changes)

    @property
    def runtime_dir(self) -> Path:
        """Folder for generated keys and tokens, kept private to the user."""
        return self.data_dir / ".runtime"


def default_data_dir() -> Path:
    """Return the per-user data directory of the platform."""
    return Path(platformdirs.user_data_dir("ventra", appauthor=False))


def _merged_sources(data_dir_hint: str | None) -> dict[str, str]:
    """Merge the data directory's ``.env``, the working directory's, then the
    environment, each overriding the one before."""
    cwd_values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    data_dir = (
        data_dir_hint
        or os.environ.get("VENTRA_DATA_DIR")
        or cwd_values.get("VENTRA_DATA_DIR")
        or str(default_data_dir())
    )
    data_env = Path(data_dir) / ".env"
    data_values = {
        k: v for k, v in dotenv_values(data_env).items() if v is not None
    }
    merged = {**data_values, **cwd_values}
    merged.update({k: v for k, v in os.environ.items() if k in KNOWN_VARIABLES})
    merged["VENTRA_DATA_DIR"] = data_dir
    return merged


def _port(values: Mapping[str, str], name: str, default: int) -> int:
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number; use 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={port} is out of range; use 0 to 65535")
    return port


def _timeout(values: Mapping[str, str]) -> float:
    raw = values.get("VENTRA_DELIVERY_TIMEOUT") or "10"
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(
            f"VENTRA_DELIVERY_TIMEOUT={raw!r} is not a number of seconds"
        ) from None
    if not 0.1 <= seconds <= 300:
        raise ConfigError(
            f"VENTRA_DELIVERY_TIMEOUT={seconds} is out of range; use 0.1 to 300 seconds"
        )
    return seconds


# A DNS label: letters, digits, hyphens inside, and underscores, which
# some local names use.
HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
HTTP_URL_RULE = (
    "an http:// or https:// URL of printable ASCII characters, with a host name"
    " or IP address, no user name or password, and a port from 1 to 65535"
)


def is_http_url(text: str) -> bool:
    """Tell whether ``text`` is an http(s) URL with a valid host and a usable port."""
    if not all("\x21" <= char <= "\x7e" for char in text):
        return False
    try:
        parsed = urlsplit(text)  # raises ValueError for unbalanced brackets
        port = parsed.port  # raises ValueError above 65535 or when not a number
        URL(text)  # the HTTP client's own parser must accept it too
    except ValueError:
        return False
    if port == 0 or parsed.scheme not in ("http", "https"):
        return False
    if "@" in parsed.netloc:
        return False  # a password in the URL would be logged and stored
    host = parsed.hostname or ""
    if "[" in parsed.netloc:
        return is_ipv6(host)
    return is_valid_host(host)


def is_ipv6(host: str) -> bool:
    """Tell whether ``host`` is an IPv6 address."""
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def is_valid_host(host: str) -> bool:
    """Tell whether ``host`` is an IP address or a DNS name of valid labels."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        name = host.removesuffix(".")  # a fully qualified name may end with a dot
        labels = name.split(".")
        return len(name) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)
    return True


def load_settings(data_dir: str | Path | None = None) -> Settings:
    """Read the configuration, the environment winning over ``.env`` files."""
    values = _merged_sources(str(data_dir) if data_dir else None)
    schedule = values.get("VENTRA_RETRY_SCHEDULE") or "fast"
    if schedule not in RETRY_SCHEDULES:
        raise ConfigError(
            f"VENTRA_RETRY_SCHEDULE={schedule!r} is unknown; use fast or realistic"
        )
    webhook_url = values.get("WEBHOOK_URL") or None
    if webhook_url is not None and not is_http_url(webhook_url):
        raise ConfigError(
            f"WEBHOOK_URL={webhook_url!r} is invalid; use {HTTP_URL_RULE}"
        )
    return Settings(
        data_dir=Path(values["VENTRA_DATA_DIR"]).expanduser().resolve(),
        api_key=values.get("API_KEY") or DEFAULT_API_KEY,
        webhook_url=webhook_url,
        webhook_secret=values.get("WEBHOOK_SECRET") or None,
        ventrasim_base_url=values.get("VENTRASIM_BASE_URL") or None,
        internal_token=values.get("VENTRA_INTERNAL_TOKEN") or None,
        sim_token=values.get("VENTRASIM_TOKEN") or None,
        database_url=values.get("DATABASE_URL") or None,
        ventra_port=_port(values, "VENTRA_PORT", DEFAULT_VENTRA_PORT),
        sim_port=_port(values, "VENTRASIM_PORT", DEFAULT_SIM_PORT),
        retry_schedule=schedule,
        delivery_timeout=_timeout(values),
    )


class DataDirLock:
    """An exclusive lock on a data directory, held while the app runs.

    Two processes on one data directory would share its embedded
    PostgreSQL, and the one that stopped first would stop it under the
    other. The operating system releases the lock when the process dies.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ".runtime" / "instance.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"the data directory {self.path.parent.parent} is in use by another"
                f" Ventra process (pid {owner}); stop it, or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
