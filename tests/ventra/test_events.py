"""Domain events: the envelope, the per-order sequence and the filters."""

from __future__ import annotations

import re

import pytest

from tests.conftest import RunningStack

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def events_of(stack: RunningStack, **params: str) -> list[dict]:  # type: ignore[type-arg]
    response = stack.ventra.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_envelope(stack: RunningStack) -> None:
    """An event has id, type, created_at, env, order_id, sequence and data."""
    order = stack.create_order(1500, env="sandbox")

    event = events_of(stack, order_id=order["id"])[0]

    assert event["id"].startswith("evt_")
    assert event["type"] == "charge.created"
    assert RFC3339_UTC.match(event["created_at"])
    assert event["env"] == "sandbox"
    assert event["order_id"] == order["id"]
    assert event["sequence"] == 1
    assert event["data"]["amount"] == 1500
    assert event["data"]["status"] == "pending_payment"


def test_sequence_per_order(stack: RunningStack) -> None:
    """Each order numbers its events 1, 2, 3, … in the order they happened."""
    first = stack.paid_order(100)
    second = stack.paid_order(200)
    stack.ventra.post(f"/v1/orders/{first['id']}/refund", json={"amount": 40})
    stack.ventra.post(f"/v1/orders/{first['id']}/release")

    found = events_of(stack, order_id=first["id"])
    other = events_of(stack, order_id=second["id"])

    ordered = sorted(found, key=lambda e: e["sequence"])
    assert [e["sequence"] for e in ordered] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in ordered] == [
        "charge.created",
        "charge.paid",
        "escrow.held",
        "escrow.refunded",
        "escrow.released",
    ]
    assert sorted(e["sequence"] for e in other) == [1, 2, 3]


def test_refund_event_data(stack: RunningStack) -> None:
    """A partial refund event carries the refunded amount and the reason."""
    order = stack.paid_order(1000)
    stack.ventra.post(
        f"/v1/orders/{order['id']}/refund", json={"amount": 250, "reason": "late"}
    )

    event = events_of(stack, order_id=order["id"], type="escrow.refunded")[0]

    assert event["data"]["refund"] == {"amount": 250, "reason": "late", "partial": True}
    assert event["data"]["held_amount"] == 750


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"type": "escrow.held"}, 1),
        ({"env": "staging"}, 1),
        ({"env": "local"}, 3),
        ({"type": "charge.created", "env": "local"}, 1),
        ({"limit": "2"}, 2),
    ],
)
def test_filters(stack: RunningStack, params: dict[str, str], count: int) -> None:
    """The list filters by type, environment and page size."""
    stack.paid_order(100)
    stack.create_order(100, env="staging")

    assert len(events_of(stack, **params)) == count


def test_get_event(stack: RunningStack) -> None:
    """GET /v1/events/{id} returns the event with its delivery."""
    order = stack.create_order(100)
    listed = events_of(stack, order_id=order["id"])[0]

    response = stack.ventra.get(f"/v1/events/{listed['id']}")

    assert response.status_code == 200
    assert response.json()["id"] == listed["id"]
    assert response.json()["data"] == listed["data"]
    assert response.json()["delivery"]["event_id"] == listed["id"]


def test_pagination(stack: RunningStack) -> None:
    """starting_after pages through events newest first without repeats."""
    for _ in range(3):
        stack.create_order(100)

    first = events_of(stack, limit="2")
    rest = events_of(stack, limit="2", starting_after=first[-1]["id"])

    ids = [e["id"] for e in first + rest]
    assert len(ids) == 3
    assert len(set(ids)) == 3
