"""Pix sandbox: txid, endToEndId and the BR Code "copia e cola" payload.

The BR Code is an EMV QR "merchant presented mode" payload: a sequence of
ID (2 digits), length (2 digits) and value fields. It ends with field 63,
a CRC16-CCITT (polynomial 0x1021, initial value 0xFFFF) computed over the
whole payload up to and including ``6304``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from app.ventra.ids import UPPER_ALPHANUMERIC, random_alphanumeric

PIX_GUI = "br.gov.bcb.pix"
SANDBOX_PIX_KEY = "pix@ventra.sandbox"
SANDBOX_ISPB = "99999008"
MERCHANT_NAME_MAX = 25
MERCHANT_CITY_MAX = 15
TXID_LENGTH = 25


class BrCodeError(ValueError):
    """A BR Code that cannot be parsed or whose CRC does not match."""


@dataclass(frozen=True)
class BrCode:
    """The fields of a parsed BR Code that Ventra reads."""

    gui: str
    key: str
    amount: str | None
    currency: str
    country: str
    merchant_name: str
    merchant_city: str
    txid: str


def new_txid() -> str:
    """Return a txid of 25 alphanumerics, the most field 62-05 carries."""
    return random_alphanumeric(TXID_LENGTH)


def new_end_to_end_id(now: datetime) -> str:
    """Return an endToEndId: E, ISPB, yyyyMMddHHmm and 11 alphanumerics."""
    suffix = random_alphanumeric(11, UPPER_ALPHANUMERIC)
    return f"E{SANDBOX_ISPB}{now:%Y%m%d%H%M}{suffix}"


def crc16_ccitt(data: bytes) -> int:
    """Compute CRC16-CCITT-FALSE (poly 0x1021, init 0xFFFF) of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def plain_ascii(text: str, limit: int) -> str:
    """Strip accents and non-printable characters and cut to ``limit``."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    printable = "".join(ch for ch in ascii_text if 32 <= ord(ch) < 127)
    return " ".join(printable.split())[:limit].strip() or "VENTRA"


def _field(field_id: str, value: str) -> str:
    if len(value) > 99:
        raise BrCodeError(f"field {field_id} is {len(value)} characters; max 99")
    return f"{field_id}{len(value):02d}{value}"


def format_amount(centavos: int) -> str:
    """Render centavos as the BR Code amount, e.g. 58242 → ``582.42``."""
    return f"{centavos // 100}.{centavos % 100:02d}"


def build_br_code(
    *, txid: str, amount: int, merchant_name: str, merchant_city: str
) -> str:
    """Build the "copia e cola" payload of a charge."""
    account = _field("00", PIX_GUI) + _field("01", SANDBOX_PIX_KEY)
    payload = (
        _field("00", "01")
        + _field("01", "12")  # 12: the code is for one payment only
        + _field("26", account)
        + _field("52", "0000")
        + _field("53", "986")
        + _field("54", format_amount(amount))
        + _field("58", "BR")
        + _field("59", plain_ascii(merchant_name, MERCHANT_NAME_MAX))
        + _field("60", plain_ascii(merchant_city, MERCHANT_CITY_MAX))
        + _field("62", _field("05", txid))
        + "6304"
    )
    return payload + f"{crc16_ccitt(payload.encode('ascii')):04X}"


def _split_fields(payload: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        header = payload[pos : pos + 4]
        if len(header) < 4 or not header.isdigit():
            raise BrCodeError(f"malformed field header {header!r} at position {pos}")
        length = int(header[2:])
        value = payload[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise BrCodeError(f"field {header[:2]} is cut short at position {pos}")
        fields[header[:2]] = value
        pos += 4 + length
    return fields


def parse_br_code(text: str) -> BrCode:
    """Parse a "copia e cola" payload, checking its CRC first."""
    payload = text.strip()
    if not payload.isascii() or len(payload) < 8:
        raise BrCodeError("a BR Code is an ASCII string of EMV fields")
    if payload[-8:-4] != "6304":
        raise BrCodeError("the BR Code does not end with a CRC field (6304)")
    expected = f"{crc16_ccitt(payload[:-4].encode('ascii')):04X}"
    if payload[-4:].upper() != expected:
        raise BrCodeError(
            f"the BR Code's CRC is {payload[-4:]!r} but its content gives {expected!r};"
            " copy the whole code again"
        )
    fields = _split_fields(payload)
    account = _split_fields(fields.get("26", ""))
    extra = _split_fields(fields.get("62", ""))
    if account.get("00", "").lower() != PIX_GUI:
        raise BrCodeError(f"the BR Code is not a Pix code (GUI {account.get('00')!r})")
    if "05" not in extra:
        raise BrCodeError("the BR Code carries no txid (field 62-05)")
    return BrCode(
        gui=account["00"],
        key=account.get("01", ""),
        amount=fields.get("54"),
        currency=fields.get("53", ""),
        country=fields.get("58", ""),
        merchant_name=fields.get("59", ""),
        merchant_city=fields.get("60", ""),
        txid=extra["05"],
    )
