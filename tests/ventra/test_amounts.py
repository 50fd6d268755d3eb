"""Amounts are integer centavos from the request to the event and the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from app.ventra.schemas import MAX_AMOUNT
from tests.conftest import RunningStack, wait_until

# R$ 582,42 / 0,29 / 1,15 / 19,99 / 8,20 in centavos.
AMOUNTS = [
    (58242, "582.42"),
    (29, "0.29"),
    (115, "1.15"),
    (1999, "19.99"),
    (820, "8.20"),
]


@pytest.mark.parametrize(("centavos", "br_code_amount"), AMOUNTS)
def test_amount_round_trip(
    stack: RunningStack, centavos: int, br_code_amount: str
) -> None:
    """An amount is stored, returned, posted and sent as the same centavos."""
    order = stack.paid_order(centavos)

    stored = stack.ventra.get(f"/v1/orders/{order['id']}").json()
    entries = stack.ventra.get(
        "/v1/ledger/transactions", params={"order_id": order["id"]}
    ).json()["data"][0]["entries"]
    sent = wait_until(
        lambda: (
            (found := stack.sim_events(order_id=order["id"], type="escrow.held"))
            and found
        )
    )

    assert stored["amount"] == centavos
    assert stored["held_amount"] == centavos
    assert f"54{len(br_code_amount):02d}{br_code_amount}" in stored["charge"]["br_code"]
    assert [e["amount"] for e in entries] == [centavos, centavos]
    assert sent[0]["payload"]["data"]["amount"] == centavos


@pytest.mark.parametrize(
    "amount",
    [0, -1, -58242, 19.99, 100.0, 1e3, True, False, "100", None, MAX_AMOUNT + 1, 2**63],
    ids=repr,
)
def test_bad_amount(shared_stack: RunningStack, amount: Any) -> None:
    """Zero, negative, fractional, boolean, text and over-limit amounts are 422."""
    response = shared_stack.ventra.post("/v1/orders", json={"amount": amount})

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_failed"
    assert response.json()["field"] == "amount"
    assert "amount" in response.json()["message"]


@pytest.mark.parametrize("amount", [0, -5, 2.5, True, "10"], ids=repr)
def test_bad_refund_amount(shared_stack: RunningStack, amount: Any) -> None:
    """A refund amount follows the same rules as an order amount."""
    order = shared_stack.paid_order(1000)

    response = shared_stack.ventra.post(
        f"/v1/orders/{order['id']}/refund", json={"amount": amount}
    )

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "amount"


def test_max_amount_accepted(shared_stack: RunningStack) -> None:
    """The largest allowed amount is accepted."""
    assert shared_stack.create_order(MAX_AMOUNT)["amount"] == MAX_AMOUNT
