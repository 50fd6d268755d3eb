"""The merchant's view of orders comes from valid events, highest sequence wins."""

from __future__ import annotations

import random

import pytest

from tests.sim.conftest import Sim, make_event

LIFECYCLE = [
    ("charge.created", "pending_payment"),
    ("charge.paid", "held"),
    ("escrow.held", "held"),
    ("escrow.released", "released"),
]


def test_paid_before_created(sim: Sim) -> None:
    """A late charge.created does not move a paid order back to pending."""
    sim.deliver(make_event("ord_pbc", 2, "charge.paid", "held"))
    sim.deliver(make_event("ord_pbc", 1, "charge.created", "pending_payment"))

    order = sim.order("ord_pbc").json()
    assert order["status"] == "held"
    assert order["sequence"] == 2
    assert order["held_amount"] == 1999
    assert order["last_event_type"] == "charge.paid"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_events_end_at_highest(sim: Sim, seed: int) -> None:
    """Events of several orders in shuffled order leave each at its last state."""
    events = [
        make_event(f"ord_{n}", sequence, event_type, status)
        for n in range(4)
        for sequence, (event_type, status) in enumerate(LIFECYCLE[: n + 1], start=1)
    ]
    random.Random(seed).shuffle(events)

    statuses = [sim.deliver(event).status_code for event in events]

    assert set(statuses) == {200}
    for n in range(4):
        order = sim.order(f"ord_{n}").json()
        assert order["sequence"] == n + 1
        assert order["status"] == LIFECYCLE[n][1]


def test_invalid_signature_ignored(sim: Sim) -> None:
    """An event with a bad signature never changes the merchant's view."""
    sim.deliver(make_event("ord_bad", 1))
    sim.deliver(make_event("ord_bad", 2, "charge.paid", "held"), secret="forged")

    order = sim.order("ord_bad").json()
    assert order["status"] == "pending_payment"
    assert order["sequence"] == 1


def test_invalid_only_order_unknown(sim: Sim) -> None:
    """An order named only by badly signed events is not in the view."""
    sim.deliver(make_event("ord_forged", 1), secret="forged")

    assert sim.order("ord_forged").status_code == 404


def test_failed_response_not_applied(sim: Sim) -> None:
    """An event rejected by a failure mode is applied only once accepted."""
    event = make_event("ord_off", 1)
    sim.set_mode("local", "offline")
    sim.deliver(event)
    before = sim.order("ord_off").status_code
    sim.set_mode("local", "normal")

    sim.deliver(event)

    assert before == 404
    assert sim.order("ord_off").json()["status"] == "pending_payment"


def test_forged_payload_replaced(sim: Sim) -> None:
    """A forged first copy of an event is replaced by the validly signed one."""
    real = make_event("ord_fp", 1, amount=500)
    forged = {**real, "data": {**real["data"], "amount": 999999}}
    sim.deliver(forged, secret="forged")

    sim.deliver(real)

    event = sim.api.get(f"/api/events/{real['id']}").json()
    assert event["payload"]["data"]["amount"] == 500
    assert event["payload_verified"] is True
    assert sim.order("ord_fp").json()["amount"] == 500


def test_orders_list_newest_first(sim: Sim) -> None:
    """GET /api/orders lists orders newest first, page by page."""
    for n in range(5):
        sim.deliver(make_event(f"ord_list{n}", 1))

    first = sim.api.get("/api/orders", params={"limit": 3}).json()
    second = sim.api.get(
        "/api/orders", params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()

    ids = [o["order_id"] for o in first["data"] + second["data"]]
    assert ids == [f"ord_list{n}" for n in range(4, -1, -1)]
    assert second["next_cursor"] is None
