"""Pix sandbox: BR Code payloads read by a third-party parser, pay by BR Code."""

from __future__ import annotations

import re
import time

import brcode
import crc
import pytest

from app.ventra import pix
from tests.conftest import RunningStack

CRC16 = crc.Calculator(crc.Crc16.IBM_3740)  # CRC-16/CCITT-FALSE
END_TO_END_ID = re.compile(r"^E\d{8}\d{12}[A-Za-z0-9]{11}$")


def third_party_crc(payload: str) -> str:
    return f"{CRC16.checksum(payload[:-4].encode('ascii')):04X}"


def test_crc_check_value() -> None:
    """Ventra's CRC gives the CRC-16/CCITT-FALSE check value."""
    assert pix.crc16_ccitt(b"123456789") == 0x29B1


def test_br_code_fields(stack: RunningStack) -> None:
    """A charge's BR Code parses with the brcode package, field by field."""
    order = stack.create_order(58242)
    payload = order["charge"]["br_code"]

    parsed = brcode.QR(payload)

    assert parsed.PFI_value == "01"
    assert parsed.MAI_GUI_value == "br.gov.bcb.pix"
    assert parsed.MAI_CHAVEPIX_value == pix.SANDBOX_PIX_KEY
    assert parsed.TA_value == "582.42"
    assert parsed.TC_value == "986"
    assert parsed.CC_value == "BR"
    assert parsed.ADF_REF_value == order["charge"]["txid"]
    assert parsed.CRC_value == third_party_crc(payload)


def test_txid_format(stack: RunningStack) -> None:
    """The txid is 25 alphanumerics, the most field 62-05 carries."""
    txid = stack.create_order(100)["charge"]["txid"]

    assert re.fullmatch(r"[A-Za-z0-9]{25}", txid)


@pytest.mark.parametrize(
    ("name", "city"),
    [
        ("José da Conceição Comércio Ltda ME", "São João del-Rei"),
        ("Açaí & Pão de Queijo Ñandú Ltda", "Florianópolis do Sul"),
        ("  Ünïcödé\tMerchant  ", "Maceió"),
    ],
)
def test_merchant_text_plain_ascii(name: str, city: str) -> None:
    """Accented, long merchant name and city come out ASCII within limits."""
    payload = pix.build_br_code(
        txid="T" * 25, amount=100, merchant_name=name, merchant_city=city
    )

    parsed = brcode.QR(payload)

    assert parsed.MN_value.isascii()
    assert parsed.MC_value.isascii()
    assert 1 <= len(parsed.MN_value) <= pix.MERCHANT_NAME_MAX
    assert 1 <= len(parsed.MC_value) <= pix.MERCHANT_CITY_MAX
    assert parsed.MN_value == pix.plain_ascii(name, pix.MERCHANT_NAME_MAX)
    assert parsed.CRC_value == third_party_crc(payload)


def test_plain_ascii_strips_accents() -> None:
    """Accents are removed, not the letters that carry them."""
    assert pix.plain_ascii("São João", 15) == "Sao Joao"


def test_pay_by_br_code(stack: RunningStack) -> None:
    """Pasting the BR Code pays its charge and sets an endToEndId."""
    order = stack.create_order(1999)

    response = stack.ventra.post(
        "/v1/pix/pay", json={"br_code": order["charge"]["br_code"]}
    )

    assert response.status_code == 200, response.text
    paid = response.json()
    assert paid["id"] == order["id"]
    assert paid["status"] == "held"
    assert END_TO_END_ID.fullmatch(paid["charge"]["end_to_end_id"])
    assert len(paid["charge"]["end_to_end_id"]) == 32


def _with_txid(payload: str, txid: str) -> str:
    body = payload[:-4].replace(payload[payload.index("0525") + 4 :][:25], txid)
    return body + f"{pix.crc16_ccitt(body.encode('ascii')):04X}"


def _wrong_crc(payload: str) -> str:
    last = "0" if payload[-1] != "0" else "1"
    return payload[:-1] + last


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("wrong_crc", 422, "invalid_br_code"),
        ("unknown_txid", 404, "not_found"),
        ("not_pix", 422, "invalid_br_code"),
        ("truncated", 422, "invalid_br_code"),
    ],
)
def test_pay_bad_br_code(
    stack: RunningStack, case: str, status: int, error: str
) -> None:
    """A BR Code that is damaged, foreign or unknown is a clear 4xx."""
    payload = stack.create_order(1000)["charge"]["br_code"]
    bad = {
        "wrong_crc": _wrong_crc(payload),
        "unknown_txid": _with_txid(payload, "Z" * 25),
        "not_pix": pix.build_br_code(
            txid="Q" * 25, amount=1000, merchant_name="X", merchant_city="Y"
        ).replace("br.gov.bcb.pix", "br.gov.bcb.xyz")[:-4],
        "truncated": payload[:40],
    }[case]
    if case == "not_pix":
        bad += f"{pix.crc16_ccitt(bad.encode('ascii')):04X}"

    response = stack.ventra.post("/v1/pix/pay", json={"br_code": bad})

    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["message"]


def test_pay_wrong_crc_message(stack: RunningStack) -> None:
    """A wrong CRC message names both values and asks to copy the code again."""
    payload = stack.create_order(1000)["charge"]["br_code"]

    response = stack.ventra.post("/v1/pix/pay", json={"br_code": _wrong_crc(payload)})

    assert "CRC" in response.json()["message"]
    assert "copy the whole code again" in response.json()["message"]


def test_pay_expired_br_code(stack: RunningStack) -> None:
    """Paying the BR Code of an expired charge is a 409 saying it expired."""
    order = stack.create_order(1000, expires_in=1)
    time.sleep(1.1)

    response = stack.ventra.post(
        "/v1/pix/pay", json={"br_code": order["charge"]["br_code"]}
    )

    assert response.status_code == 409
    assert response.json()["status"] == "expired"
    assert "expired" in response.json()["message"]


def test_pay_by_br_code_twice(stack: RunningStack) -> None:
    """A BR Code pays once; the second paste is a 409 naming the status."""
    order = stack.create_order(1000)
    body = {"br_code": order["charge"]["br_code"]}
    stack.ventra.post("/v1/pix/pay", json=body)

    response = stack.ventra.post("/v1/pix/pay", json=body)

    assert response.status_code == 409
    assert "status is held" in response.json()["message"]
