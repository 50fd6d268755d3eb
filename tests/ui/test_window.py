"""The window over running servers: live events and a responsive Qt loop."""

from __future__ import annotations

import asyncio
import time

import qasync
from PySide6.QtWidgets import QPushButton

from app.ui.main_window import MainWindow
from app.ui.models import SIG_OK
from tests.conftest import RunningStack


async def wait_for(predicate, timeout: float) -> float:
    """Wait on the running loop until ``predicate()``; return the seconds taken."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def rows_for(window: MainWindow, order_id: str) -> list[dict]:
    return [r for r in window.events.rows if r.get("order_id") == order_id]


def test_payment_appears_live(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """A payment's events show up within 2 s without a manual refresh."""

    async def scenario() -> tuple[float, list[dict]]:
        window.start()
        await wait_for(lambda: window._last_attempt_id >= 0, 5)
        loop = asyncio.get_running_loop()
        order = await loop.run_in_executor(None, stack.paid_order, 2500)
        taken = await wait_for(lambda: len(rows_for(window, order["id"])) == 3, 5)
        return taken, rows_for(window, order["id"])

    taken, rows = qloop.run_until_complete(scenario())

    assert taken < 2.0
    assert {r["type"] for r in rows} == {"charge.created", "charge.paid", "escrow.held"}
    assert all(window.events.data(window.events.index(i, 3)) == SIG_OK for i in range(3))


def test_create_and_pay_button(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """The toolbar button creates and pays an order through VentraSim."""
    paid: list[str] = []
    window.order_paid.connect(paid.append)
    window.amount.setText("8,20")

    async def scenario() -> None:
        window.start()
        window.pay_button.click()
        await wait_for(lambda: bool(paid), 5)
        await wait_for(lambda: len(rows_for(window, paid[0])) == 3, 5)

    qloop.run_until_complete(scenario())

    order = stack.ventra.get(f"/v1/orders/{paid[0]}").json()
    assert order["amount"] == 820
    assert order["status"] == "held"


def test_qt_responsive_while_delivery_waits(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """Qt timers keep firing while a receiver keeps a delivery open."""
    stack.set_mode("local", "timeout", timeout_cap_seconds=5)
    ticks: list[float] = []

    async def scenario() -> None:
        window.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stack.paid_order, 1999)
        from PySide6.QtCore import QTimer

        timer = QTimer()
        timer.setInterval(50)
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start()
        await asyncio.sleep(2.0)
        timer.stop()

    qloop.run_until_complete(scenario())

    held = stack.ventra.get("/v1/events", params={"limit": 5}).json()["data"]
    assert any(e["delivery"]["status"] == "in_flight" for e in held)
    assert len(ticks) >= 20
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.5


def test_mode_switch_sets_receiver(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """Choosing offline in the toolbar changes VentraSim's mode."""
    changed: list[tuple[str, str]] = []
    window.mode_changed.connect(lambda env, mode: changed.append((env, mode)))

    async def scenario() -> None:
        window.set_mode("offline")
        await wait_for(lambda: bool(changed), 5)

    qloop.run_until_complete(scenario())

    endpoints = stack.sim.get("/api/endpoints").json()["data"]
    local = next(e for e in endpoints if e["env"] == "local")
    assert local["mode"] == "offline"


def test_drawer_retry_after_secret_fix(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """A wrong secret shows SIG FAIL; after fixing it, Retry shows SIG OK."""
    endpoints = stack.sim.get("/api/endpoints").json()["data"]
    secret = next(e for e in endpoints if e["env"] == "local")["secret"]
    stack.sim.put("/api/endpoints/local", json={"secret": "whsec_wrong"})
    order = stack.create_order(amount=115)

    async def scenario() -> None:
        window.start()
        await wait_for(lambda: len(rows_for(window, order["id"])) == 1, 5)
        row = rows_for(window, order["id"])[0]
        assert row["signature_valid"] is False
        window.settings.env.setCurrentText("local")
        window.settings.secret.setText(secret)
        window.settings.findChild(QPushButton, "save_secret").click()
        await wait_for(lambda: "saved" in window.settings.message.text(), 5)
        window._event_clicked(window.events.index(window.events.rows.index(row), 0))
        await wait_for(lambda: window.drawer.event_id == row["event_id"], 5)
        window.drawer.retry_button.click()
        await wait_for(lambda: "succeeded" in window.drawer.retry_result.text(), 10)
        await wait_for(lambda: window.drawer.attempts.rows[-1]["signature_valid"], 5)

    qloop.run_until_complete(scenario())

    attempts = window.drawer.attempts.rows
    assert attempts[0]["signature_valid"] is False
    assert attempts[-1]["signature_valid"] is True
    assert "SIG OK" in window.drawer.title.text()


def test_rotate_key_keeps_actions_working(
    window: MainWindow, stack: RunningStack, qloop: qasync.QEventLoop
) -> None:
    """After a rotation from the window, its merchant actions still work."""
    old_key = stack.info.api_key
    paid: list[str] = []
    window.order_paid.connect(paid.append)

    async def scenario() -> None:
        window.rotate_key()
        await wait_for(lambda: window.settings.api_key.text() != old_key, 5)
        window.pay_button.click()
        await wait_for(lambda: bool(paid), 5)

    qloop.run_until_complete(scenario())

    old = stack.ventra.get("/v1/orders")
    assert old.status_code == 401
    assert window.client.endpoints.api_key == window.settings.api_key.text()
    assert len(paid) == 1
