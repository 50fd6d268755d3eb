"""Webhook signatures shared by sender and receiver.

``X-Signature`` is the lowercase hex HMAC-SHA256 of the body bytes, keyed
with the UTF-8 bytes of the whole secret string. ``webhook-signature``
follows Standard Webhooks: ``v1,`` + base64 HMAC-SHA256 over
``{id}.{timestamp}.{body}``, keyed with the base64-decoded part after
``whsec_``, or with the UTF-8 bytes of a secret not in that form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """Return a new secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def hex_signature(secret: str, body: bytes) -> str:
    """Compute the ``X-Signature`` value of ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> bytes:
    """Return the Standard Webhooks key bytes of ``secret``."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after the prefix: keyed like any other string
    return secret.encode("utf-8")


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Compute the ``webhook-signature`` value (``v1,<base64>``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def fingerprint(secret: str) -> str:
    """Return a short fingerprint that identifies a secret without revealing it."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def verify_hex(secret: str, body: bytes, received: str | None) -> bool:
    """Check an ``X-Signature`` header in constant time."""
    if not received:
        return False
    expected = hex_signature(secret, body)
    # compare_digest on bytes accepts any input; a non-ASCII header fails.
    return hmac.compare_digest(expected.encode("ascii"), received.encode("utf-8"))


def verify_standard(
    secret: str, msg_id: str, timestamp: int, body: bytes, header: str
) -> bool:
    """Check a ``webhook-signature`` header (space-separated ``v1,…`` list)."""
    expected = standard_signature(secret, msg_id, timestamp, body).encode("ascii")
    for candidate in header.split():
        if hmac.compare_digest(expected, candidate.encode("utf-8")):
            return True
    return False
