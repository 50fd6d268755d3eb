"""Failure modes of the receiver, for training: how the receiver responds.

- ``normal``: 200, or 401 for an invalid signature and 400 for a body
  that is not an event.
- ``offline``: 503 at once, with ``Retry-After`` when ``retry_after`` is set.
- ``timeout``: keeps the request open until the sender hangs up, or
  returns 504 after ``timeout_cap_seconds``.
- ``flaky``: fails ``flaky_percent`` percent of requests at random with 503,
  and ``Retry-After`` when ``retry_after`` is set.
- ``slow``: responds as ``normal`` after ``slow_ms`` milliseconds.
- ``status``: returns ``status`` to every request, with ``Retry-After``
  when ``retry_after`` is set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

MODES = ("normal", "offline", "timeout", "flaky", "slow", "status")
DEFAULT_TIMEOUT_CAP_SECONDS = 60

# Option name -> (minimum, maximum, default), per mode.
MODE_OPTIONS: dict[str, dict[str, tuple[int, int, int | None]]] = {
    "normal": {},
    "offline": {"retry_after": (0, 86_400, None)},
    "timeout": {"timeout_cap_seconds": (1, 600, DEFAULT_TIMEOUT_CAP_SECONDS)},
    "flaky": {"flaky_percent": (0, 100, 30), "retry_after": (0, 86_400, None)},
    "slow": {"slow_ms": (0, 120_000, 2000)},
    "status": {"status": (200, 599, 500), "retry_after": (0, 86_400, None)},
}


@dataclass(frozen=True)
class ModeSettings:
    """The mode of one environment and its options."""

    mode: str = "normal"
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> int | None:
        """Return an option's value, or its default when it is unset."""
        if name in self.options:
            return int(self.options[name])
        return MODE_OPTIONS[self.mode].get(name, (0, 0, None))[2]

    @property
    def flaky_percent(self) -> int:
        return self.option("flaky_percent") or 0

    @property
    def slow_ms(self) -> int:
        return self.option("slow_ms") or 0

    @property
    def fixed_status(self) -> int:
        return self.option("status") or 500

    @property
    def retry_after(self) -> int | None:
        return self.option("retry_after")

    @property
    def timeout_cap(self) -> float:
        return float(self.option("timeout_cap_seconds") or DEFAULT_TIMEOUT_CAP_SECONDS)

    @cached_property
    def summary(self) -> dict[str, Any]:
        """Return the mode and every option in force, defaults included."""
        options = {}
        for name in MODE_OPTIONS[self.mode]:
            value = self.option(name)
            if value is not None:
                options[name] = value
        return {"mode": self.mode, **options}


def flaky_fails(percent: int, rng: random.Random | None = None) -> bool:
    """Decide at random whether a flaky-mode request fails."""
    return (rng or random).random() * 100 < percent


def validate_options(mode: str, options: dict[str, Any]) -> dict[str, int]:
    """Check a mode's options; raise ValueError naming the first bad one."""
    allowed = MODE_OPTIONS[mode]
    clean: dict[str, int] = {}
    for key, value in options.items():
        if key not in allowed:
            names = ", ".join(allowed) or "none"
            raise ValueError(
                f"{key} is not an option of mode {mode}; its options: {names}"
            )
        low, high, _ = allowed[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= high
        ):
            raise ValueError(
                f"{key}={value!r} is invalid; use a whole number from {low} to {high}"
            )
        clean[key] = value
    return clean
