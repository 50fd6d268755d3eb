"""Parse a received body into a Ventra event envelope, whatever the bytes are."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MAX_ID_LENGTH = 200
MAX_TYPE_LENGTH = 100
# Ventra's envelope nests three levels; a deeper body is not one of its events.
MAX_DEPTH = 64
MAX_SEQUENCE = 2**62
MAX_AMOUNT = 2**63 - 1


class _TooDeep(ValueError):
    pass


@dataclass
class ParsedEvent:
    """The fields of a Ventra event envelope that the receiver reads."""

    event_id: str
    type: str
    env: str | None
    order_id: str | None
    sequence: int | None
    payload: dict[str, Any]
    payload_json: str


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_float(text: str) -> float:
    """Decode a JSON number that PostgreSQL's numeric type can also hold.

    PostgreSQL rejects a decimal exponent beyond 1000 either way; Python
    turns a large one into infinity and a small one into 0.0.
    """
    value = float(text)
    _, _, exponent = text.lower().partition("e")
    if not math.isfinite(value) or (exponent and abs(int(exponent)) > 1000):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _clean(value: Any, depth: int = 0) -> Any:
    """Copy a decoded JSON value without NUL characters or lone surrogates.

    PostgreSQL text and jsonb reject both, and JSON can carry them as
    ``\\u0000`` and ``\\ud800`` escapes.
    """
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, list):
        return [_clean(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_clean_text(k): _clean(v, depth + 1) for k, v in value.items()}
    return value


def _clean_text(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)


def _name(value: Any, max_length: int) -> str | None:
    """Return ``value`` when it is a printable string of a usable length."""
    if isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable():
        return value
    return None


def _whole_number(value: Any, upper: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < upper:
        return value
    return None


def parse_event(body: bytes) -> tuple[ParsedEvent | None, str | None]:
    """Parse a Ventra envelope; return the event or the reason it is not one."""
    if not body:
        return None, "the body is empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"the body is not UTF-8 (invalid byte at offset {exc.start})"
    try:
        data = json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_float
        )
    except json.JSONDecodeError as exc:
        return None, f"the body is not JSON: {exc.msg} at offset {exc.pos}"
    except RecursionError:
        return None, f"the body is JSON nested deeper than {MAX_DEPTH} levels"
    except ValueError as exc:
        # NaN, Infinity and integers over Python's digit limit.
        return None, f"the body is not JSON that can be stored: {exc}"
    if not isinstance(data, dict):
        return None, f"the body is a JSON {type(data).__name__}, not an object"

    try:
        if "\\u" in text:
            data = _clean(data)
            payload_json = json.dumps(data, ensure_ascii=False)
        else:
            # Without escapes the text has no NUL or lone surrogate, so
            # PostgreSQL can store it as it came. Nesting cannot be deeper than
            # the count of opening brackets, so most bodies skip the walk.
            if text.count("{") + text.count("[") > MAX_DEPTH:
                _check_depth(data)
            payload_json = text
    except _TooDeep:
        return None, f"the body is JSON nested deeper than {MAX_DEPTH} levels"

    event_id = _name(data.get("id"), MAX_ID_LENGTH)
    if event_id is None:
        return None, "the body has no event id: id must be a printable string"
    event_type = _name(data.get("type"), MAX_TYPE_LENGTH)
    if event_type is None:
        return None, "the body has no event type: type must be a printable string"
    return (
        ParsedEvent(
            event_id=event_id,
            type=event_type,
            env=_name(data.get("env"), 64),
            order_id=_name(data.get("order_id"), MAX_ID_LENGTH),
            sequence=_whole_number(data.get("sequence"), MAX_SEQUENCE),
            payload=data,
            payload_json=payload_json,
        ),
        None,
    )


def order_amounts(data: dict[str, Any]) -> dict[str, int]:
    """Read the amounts of an order snapshot; a missing or odd one is 0."""
    amounts = {}
    for name in ("amount", "held_amount", "released_amount", "refunded_amount"):
        amounts[name] = _whole_number(data.get(name), MAX_AMOUNT) or 0
    return amounts
