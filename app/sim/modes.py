"""Failure modes of the receiver, for training: how each request is answered."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

MODES = ("normal", "offline", "timeout", "flaky", "slow", "status")
DEFAULT_TIMEOUT_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class ModeSettings:
    """The mode of one environment and its parameters."""

    mode: str = "normal"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def flaky_percent(self) -> int:
        return int(self.options.get("flaky_percent", 30))

    @property
    def slow_ms(self) -> int:
        return int(self.options.get("slow_ms", 2000))

    @property
    def fixed_status(self) -> int:
        return int(self.options.get("status", 500))

    @property
    def retry_after(self) -> int | None:
        value = self.options.get("retry_after")
        return None if value is None else int(value)

    @property
    def timeout_cap(self) -> float:
        return float(self.options.get("timeout_cap_seconds", DEFAULT_TIMEOUT_CAP_SECONDS))


def flaky_fails(percent: int, rng: random.Random | None = None) -> bool:
    """Decide whether a flaky-mode request fails."""
    return (rng or random).random() * 100 < percent


def validate_options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check a mode's parameters, returning only the known ones."""
    allowed: dict[str, tuple[str, int, int]] = {
        "flaky_percent": ("flaky_percent", 0, 100),
        "slow_ms": ("slow_ms", 0, 120_000),
        "status": ("status", 200, 599),
        "retry_after": ("retry_after", 0, 86_400),
        "timeout_cap_seconds": ("timeout_cap_seconds", 1, 600),
    }
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"{key} is not a mode option; use one of {', '.join(allowed)}")
        _, low, high = allowed[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key}={value!r} is invalid; use a whole number from {low} to {high}")
        clean[key] = value
    return clean
