"""The window's signature badge, fed by VentraSim's real event records."""

from __future__ import annotations

from app.ui.models import SIG_FAIL, SIG_LAST_FAIL, SIG_OK, signature_badge
from tests.sim.conftest import Sim, make_event


def event_record(sim: Sim, event_id: str) -> dict:
    response = sim.api.get(f"/api/events/{event_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_badge_of_signed_event(sim: Sim) -> None:
    sim.deliver(make_event("ord_ok", 1, event_id="evt_badge_ok"))

    assert signature_badge(event_record(sim, "evt_badge_ok")) == SIG_OK


def test_badge_of_forged_event(sim: Sim) -> None:
    sim.deliver(make_event("ord_bad", 1, event_id="evt_badge_bad"), secret="forged")

    assert signature_badge(event_record(sim, "evt_badge_bad")) == SIG_FAIL


def test_badge_after_forged_repeat(sim: Sim) -> None:
    """A forged repeat of a verified event flags its latest attempt only."""
    event = make_event("ord_rep", 1, event_id="evt_badge_rep")
    sim.deliver(event)
    sim.deliver(event, secret="forged")

    record = event_record(sim, "evt_badge_rep")

    assert record["payload_verified"] is True
    assert record["signature_valid"] is False
    assert signature_badge(record) == SIG_LAST_FAIL
    attempts = record["attempts"]
    assert [signature_badge(a) for a in attempts] == [SIG_OK, SIG_FAIL]
