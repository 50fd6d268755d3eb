"""Check both signature schemes of a received webhook over its raw bytes.

``X-Signature`` decides whether a request is validly signed. The Standard
Webhooks headers are checked too when present, and their result is stored
beside it for the merchant to see.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDictProxy

from app.core.signatures import verify_hex, verify_standard

# Standard Webhooks timestamps further than this from the receiver's clock,
# in either direction, are rejected, as the reference libraries do.
TIMESTAMP_TOLERANCE_SECONDS = 300
HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
ASCII_DIGITS = re.compile(r"[0-9]{1,12}")
PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]{1,256}")
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True)
class Verdict:
    """The result of checking both signature schemes of one request."""

    valid: bool
    error: str | None
    standard_valid: bool | None
    standard_error: str | None


def verify(secret: str | None, request: web.Request, body: bytes) -> Verdict:
    """Check ``X-Signature`` and, when present, the Standard Webhooks headers."""
    if secret is None:
        return Verdict(False, "no secret is set for this environment", None, None)
    headers = request.headers
    valid, error = _verify_hex(secret, headers, body)
    standard_valid, standard_error = _verify_standard(secret, headers, body)
    return Verdict(valid, error, standard_valid, standard_error)


def _verify_hex(
    secret: str, headers: CIMultiDictProxy[str], body: bytes
) -> tuple[bool, str | None]:
    values = headers.getall("X-Signature", [])
    if not values:
        return False, "X-Signature header is missing"
    if len(values) > 1:
        return False, f"X-Signature is sent {len(values)} times; send it once"
    received = values[0]
    if not HEX_SIGNATURE.fullmatch(received):
        return False, _hex_format_error(received)
    if not verify_hex(secret, body, received):
        return False, "X-Signature does not match the body and the secret"
    return True, None


def _hex_format_error(received: str) -> str:
    """Name what is wrong with an ``X-Signature`` that is not lowercase hex."""
    if received.lower().startswith("sha256="):
        return "X-Signature has a 'sha256=' prefix; send the bare lowercase hex digest"
    if HEX_SIGNATURE.fullmatch(received.lower()):
        return "X-Signature is uppercase hex; send 64 lowercase hex characters"
    if not received.isascii():
        return "X-Signature contains non-ASCII characters; send 64 lowercase hex"
    return (
        f"X-Signature is {len(received)} characters that are not lowercase hex;"
        " send the 64-character hex HMAC-SHA256 of the body"
    )


def _verify_standard(
    secret: str, headers: CIMultiDictProxy[str], body: bytes
) -> tuple[bool | None, str | None]:
    msg_id, stamp, signature = (headers.get(name) for name in STANDARD_HEADERS)
    if msg_id is None and stamp is None and signature is None:
        return None, None
    missing = [
        n for n, v in zip(STANDARD_HEADERS, (msg_id, stamp, signature)) if v is None
    ]
    if missing:
        names = ", ".join(missing)
        return (
            False,
            f"{names} missing: send all three Standard Webhooks headers or none",
        )
    assert msg_id is not None
    assert stamp is not None
    assert signature is not None

    if not PRINTABLE_ASCII.fullmatch(msg_id):
        return False, "webhook-id must be 1 to 256 printable ASCII characters"
    if not ASCII_DIGITS.fullmatch(stamp):
        return False, "webhook-timestamp is not a Unix time in seconds"

    skew = int(stamp) - time.time()
    if abs(skew) > TIMESTAMP_TOLERANCE_SECONDS:
        direction = "ahead of" if skew > 0 else "behind"
        return False, (
            f"webhook-timestamp is {abs(int(skew))} s {direction} the receiver's clock;"
            f" the tolerance is {TIMESTAMP_TOLERANCE_SECONDS} s"
        )

    if not signature.isascii():
        return False, "webhook-signature contains non-ASCII characters"
    if not verify_standard(secret, msg_id, int(stamp), body, signature):
        return False, "webhook-signature has no v1 signature that matches"
    return True, None
