"""End to end: an order paid on Ventra reaches VentraSim signed."""

from tests.conftest import RunningStack, wait_until


def test_paid_order_events_reach_sim(stack: RunningStack) -> None:
    """Creating and paying delivers three validly signed events."""
    order = stack.paid_order(amount=1999)

    events = wait_until(
        lambda: len(found := stack.sim_events(order_id=order["id"])) == 3 and found
    )

    types = sorted(e["type"] for e in events)
    assert types == ["charge.created", "charge.paid", "escrow.held"]
    assert all(e["signature_valid"] for e in events)
    assert all(e["attempt_count"] == 1 for e in events)
