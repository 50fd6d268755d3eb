"""Identifiers: a prefix and random alphanumerics."""

import secrets
import string

ALPHANUMERIC = string.ascii_letters + string.digits
UPPER_ALPHANUMERIC = string.ascii_uppercase + string.digits


def new_id(prefix: str, length: int = 20) -> str:
    """Return ``prefix_`` followed by ``length`` random alphanumerics."""
    return f"{prefix}_" + "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def random_alphanumeric(length: int, alphabet: str = ALPHANUMERIC) -> str:
    """Return ``length`` random characters of ``alphabet``."""
    return "".join(secrets.choice(alphabet) for _ in range(length))
