"""Automatic retries: the fast schedule, its end, cancelling, order of events."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web

from app.ventra.attempts import JITTER, SCHEDULES
from tests.conftest import RunningStack, wait_until
from tests.delivery.conftest import ENV, delivery_statuses, query
from tests.delivery.receiver import Received, Receiver

FAST = SCHEDULES["fast"]


async def reject_created(request: Received) -> web.StreamResponse:
    """Return 400 for charge.created events and 200 for the rest."""
    rejected = request.event()["type"] == "charge.created"
    return web.Response(status=400 if rejected else 200)


def test_schedule_ends_and_releases_newer(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """50 rejected events get the schedule's attempts; newer events wait, then go."""
    receiver.respond = reject_created
    stack = aimed()
    for _ in range(49):
        stack.create_order(env=ENV)
    paid = stack.paid_order(env=ENV)
    total = sum(FAST) * (1 + JITTER)

    wait_until(
        lambda: not {"pending", "in_flight"} & set(delivery_statuses(stack).values()),
        timeout=total + 20,
    )
    time.sleep(1.0)
    by_event: dict[str, list[Received]] = defaultdict(list)
    for request in receiver.posts():
        by_event[request.event_id].append(request)
    rejected = [
        r for r in by_event.values() if r[0].event()["type"] == "charge.created"
    ]
    counts = {len(requests) for requests in rejected}
    statuses = delivery_statuses(stack)
    created = next(r for r in rejected if r[0].event()["order_id"] == paid["id"])
    newer = [
        requests[0]
        for requests in by_event.values()
        if requests[0].event()["order_id"] == paid["id"]
        and requests[0].event()["sequence"] > 1
    ]

    assert len(rejected) == 50
    assert sum(len(r) for r in rejected) <= 50 * (len(FAST) + 1)
    assert counts == {len(FAST) + 1}
    assert sorted(statuses.values()).count("failed") == 50
    assert sorted(statuses.values()).count("delivered") == 2
    assert len(newer) == 2
    assert min(r.at for r in newer) > created[-1].at


def test_gaps_follow_schedule(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """The gaps between attempts are the schedule's delays, within the jitter."""
    receiver.respond = reject_created
    stack = aimed()
    stack.create_order(env=ENV)
    first_three = sum(FAST[:3]) * (1 + JITTER) + 5

    requests = wait_until(
        lambda: len(receiver.posts()) >= 4 and receiver.posts(), first_three
    )
    gaps = [
        later.at - earlier.at for earlier, later in itertools.pairwise(requests[:4])
    ]
    rows = query(stack, "SELECT next_attempt_at IS NOT NULL FROM deliveries")

    for gap, delay in zip(gaps, FAST):
        assert delay * (1 - JITTER) - 0.05 <= gap <= delay * (1 + JITTER) + 0.5
    assert rows == [(True,)]


def test_disable_cancels_pending(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """Disabling the endpoint cancels the deliveries waiting to retry."""
    receiver.respond = reject_created
    stack = aimed()
    for _ in range(10):
        stack.create_order(env=ENV)
    wait_until(lambda: len(receiver.posts()) >= 10)

    response = stack.ventra.put(f"/v1/webhook-endpoints/{ENV}", json={"enabled": False})
    wait_until(lambda: "in_flight" not in delivery_statuses(stack).values())
    posts = len(receiver.posts())
    time.sleep(2.5)  # past the first two delays of the fast schedule

    assert response.status_code == 200
    assert set(delivery_statuses(stack).values()) == {"cancelled"}
    assert len(receiver.posts()) == posts


def test_order_events_in_sequence(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """A healthy receiver gets each order's events in sequence order."""
    stack = aimed()
    orders = [stack.paid_order(env=ENV)["id"] for _ in range(15)]

    wait_until(lambda: len(receiver.posts()) >= 45)
    sequences: dict[str, list[int]] = defaultdict(list)
    for request in receiver.posts():
        event = request.event()
        sequences[event["order_id"]].append(event["sequence"])

    for order_id in orders:
        assert sequences[order_id] == [1, 2, 3]


def test_failing_event_holds_newer(
    aimed: Callable[..., RunningStack], receiver: Receiver
) -> None:
    """While an older event is retrying, the newer ones of its order wait."""

    async def fail_created_twice(request: Received) -> web.StreamResponse:
        event = request.event()
        failing = event["type"] == "charge.created" and request.attempt < 3
        return web.Response(status=500 if failing else 200)

    receiver.respond = fail_created_twice
    stack = aimed()

    order = stack.paid_order(env=ENV)
    wait_until(lambda: len(receiver.posts()) >= 5, timeout=15)
    arrivals = [(r.event()["sequence"], r.attempt) for r in receiver.posts()]

    assert arrivals == [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]
    assert order["status"] == "held"
