"""Escrow order transitions, conflicts, expiry and atomic commits."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack, wait_until

ACTIONS = ("pay", "release", "refund", "partial_refund")


def act(stack: RunningStack, order_id: str, action: str) -> httpx.Response:
    """Send one order action over HTTP."""
    if action == "partial_refund":
        return stack.ventra.post(f"/v1/orders/{order_id}/refund", json={"amount": 100})
    return stack.ventra.post(f"/v1/orders/{order_id}/{action}")


def orders_in(stack: RunningStack, status: str, count: int = 1) -> list[dict[str, Any]]:
    """Create ``count`` orders and drive each to ``status``."""
    if status == "expired":
        ids = [stack.create_order(1000, expires_in=1)["id"] for _ in range(count)]

        def all_expired() -> list[dict[str, Any]] | None:
            found = [stack.ventra.get(f"/v1/orders/{i}").json() for i in ids]
            return found if all(o["status"] == "expired" for o in found) else None

        return wait_until(all_expired, timeout=5)
    steps = {
        "pending_payment": [],
        "held": ["pay"],
        "released": ["pay", "release"],
        "refunded": ["pay", "refund"],
    }[status]
    orders = []
    for _ in range(count):
        order = stack.create_order(1000)
        for step in steps:
            response = act(stack, order["id"], step)
            assert response.status_code == 200, response.text
            order = response.json()
        orders.append(order)
    return orders


def order_in(stack: RunningStack, status: str) -> dict[str, Any]:
    """Create an order and drive it to ``status``."""
    return orders_in(stack, status)[0]


def verify(stack: RunningStack) -> dict[str, Any]:
    response = stack.ventra.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    return response.json()


# (status before, action) -> status after; every pair not listed is a 409.
ALLOWED = {
    ("pending_payment", "pay"): "held",
    ("held", "release"): "released",
    ("held", "refund"): "refunded",
    ("held", "partial_refund"): "held",
}
STATUSES = ("pending_payment", "held", "released", "refunded", "expired")


@pytest.mark.parametrize("status", STATUSES)
def test_transition_table(stack: RunningStack, status: str) -> None:
    """Each action from each status succeeds as allowed or is a 409 naming it."""
    for action, order in zip(ACTIONS, orders_in(stack, status, len(ACTIONS))):
        response = act(stack, order["id"], action)

        expected = ALLOWED.get((status, action))
        if expected is None:
            assert response.status_code == 409, (action, response.text)
            assert response.json()["status"] == status
            assert f"status is {status}" in response.json()["message"]
        else:
            assert response.status_code == 200, (action, response.text)
            assert response.json()["status"] == expected
    assert verify(stack)["ok"]


def test_partial_refund_then_release(stack: RunningStack) -> None:
    """A partial refund keeps the rest held, which can then be released."""
    order = stack.paid_order(5000)

    partial = stack.ventra.post(
        f"/v1/orders/{order['id']}/refund", json={"amount": 1200, "reason": "damaged"}
    ).json()
    released = stack.ventra.post(f"/v1/orders/{order['id']}/release").json()

    assert partial["status"] == "held"
    assert partial["held_amount"] == 3800
    assert partial["refunded_amount"] == 1200
    assert released["status"] == "released"
    assert released["released_amount"] == 3800
    assert released["held_amount"] == 0
    assert verify(stack)["custody_balance"] == 0


def test_partial_refunds_to_zero(stack: RunningStack) -> None:
    """Partial refunds that reach the whole amount end the order refunded."""
    order = stack.paid_order(300)

    for _ in range(3):
        last = stack.ventra.post(
            f"/v1/orders/{order['id']}/refund", json={"amount": 100}
        ).json()

    assert last["status"] == "refunded"
    assert last["refunded_amount"] == 300


def test_refund_over_held(stack: RunningStack) -> None:
    """Refunding more than is held is a 409 that names the held amount."""
    order = stack.paid_order(500)

    response = stack.ventra.post(
        f"/v1/orders/{order['id']}/refund", json={"amount": 501}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "refund_exceeds_held"
    assert "holds 500 centavos" in response.json()["message"]
    assert "status held" in response.json()["message"]


def test_unknown_order(stack: RunningStack) -> None:
    """An unknown order id is a 404 for reads and actions."""
    for response in (
        stack.ventra.get("/v1/orders/ord_missing"),
        stack.ventra.post("/v1/orders/ord_missing/pay"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


def test_conflicting_requests_one_winner(stack: RunningStack) -> None:
    """20 concurrent release/refund requests on one order: exactly one wins."""
    order = stack.paid_order(4242)
    actions = ["release", "refund"] * 10

    def send(action: str) -> httpx.Response:
        with httpx.Client(
            base_url=str(stack.ventra.base_url), headers=stack.ventra.headers
        ) as client:
            return client.post(f"/v1/orders/{order['id']}/{action}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, actions))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19
    final = stack.ventra.get(f"/v1/orders/{order['id']}").json()
    assert final["held_amount"] == 0
    assert final["released_amount"] + final["refunded_amount"] == 4242
    transactions = stack.ventra.get(
        "/v1/ledger/transactions", params={"order_id": order["id"]}
    ).json()["data"]
    assert len(transactions) == 2
    assert verify(stack)["ok"]


def test_charge_expires(stack: RunningStack) -> None:
    """An unpaid charge expires and emits charge.expired; paying it is a 409."""
    order = order_in(stack, "expired")

    response = stack.ventra.post(f"/v1/orders/{order['id']}/pay")
    events = stack.ventra.get("/v1/events", params={"order_id": order["id"]}).json()

    assert response.status_code == 409
    assert "expired" in response.json()["message"]
    assert [e["type"] for e in events["data"]] == ["charge.expired", "charge.created"]


def test_expiry_due_while_closed(
    stack_factory: Callable[..., RunningStack],
) -> None:
    """A charge that expires while Ventra is stopped expires at the next start."""
    first = stack_factory()
    order = first.create_order(1000, expires_in=1)
    first.ventra.close()
    first.background.stop()
    time.sleep(1.2)

    second = stack_factory()

    with second.databases.ventra_conn() as conn:

        def stored_status() -> str:
            # Read the row directly: a GET through the API would expire it.
            row = conn.execute(
                "SELECT status FROM orders WHERE id = %s", (order["id"],)
            )
            return row.fetchone()[0]

        wait_until(lambda: stored_status() == "expired", timeout=5)
    events = second.ventra.get("/v1/events", params={"order_id": order["id"]})
    assert events.json()["data"][0]["type"] == "charge.expired"


def test_failure_before_commit(stack_factory: Callable[..., RunningStack]) -> None:
    """A failure after the change and before commit keeps neither it nor its event."""
    armed = {"step": None}

    async def fail(step: str) -> None:
        if step == armed["step"]:
            raise RuntimeError(f"injected failure at {step}")

    stack = stack_factory(ventra_hooks={"before_commit": fail})
    order = stack.create_order(700)
    armed["step"] = "pay"

    response = stack.ventra.post(f"/v1/orders/{order['id']}/pay")

    assert response.status_code == 500
    after = stack.ventra.get(f"/v1/orders/{order['id']}").json()
    assert after["status"] == "pending_payment"
    assert after["charge"]["end_to_end_id"] is None
    events = stack.ventra.get("/v1/events", params={"order_id": order["id"]}).json()
    assert [e["type"] for e in events["data"]] == ["charge.created"]
    ledger = stack.ventra.get(
        "/v1/ledger/transactions", params={"order_id": order["id"]}
    ).json()
    assert ledger["data"] == []
    assert verify(stack)["ok"]


def test_failure_before_create_commit(
    stack_factory: Callable[..., RunningStack],
) -> None:
    """A failed create leaves no order and no event behind."""

    async def fail(step: str) -> None:
        raise RuntimeError(f"injected failure at {step}")

    stack = stack_factory(ventra_hooks={"before_commit": fail})

    response = stack.ventra.post("/v1/orders", json={"amount": 100})

    assert response.status_code == 500
    assert stack.ventra.get("/v1/orders").json()["data"] == []
    assert stack.ventra.get("/v1/events").json()["data"] == []
