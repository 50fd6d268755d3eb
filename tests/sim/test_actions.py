"""Merchant actions through Ventra, and the fix-the-secret-then-retry flow."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import RunningStack, wait_until


def _ventra_secret(stack: RunningStack, env: str) -> str:
    endpoints = stack.ventra.get("/v1/webhook-endpoints").json()["data"]
    return next(e["secret"] for e in endpoints if e["env"] == env)


def _attempts(stack: RunningStack, event_id: str) -> list[dict[str, Any]]:
    response = stack.sim.get(f"/api/events/{event_id}")
    return response.json()["attempts"] if response.status_code == 200 else []


def test_wrong_secret_then_fixed_retry(stack: RunningStack) -> None:
    """A wrong secret shows SIG FAIL; fixing it and retrying shows SIG OK."""
    stack.sim.put("/api/endpoints/local", json={"secret": "whsec_d3Jvbmctc2VjcmV0"})
    order = stack.create_order(amount=1500)
    event = wait_until(lambda: stack.sim_events(order_id=order["id"]), timeout=15)[0]
    failed = wait_until(lambda: _attempts(stack, event["event_id"]), timeout=15)[0]

    stack.sim.put(
        "/api/endpoints/local", json={"secret": _ventra_secret(stack, "local")}
    )
    retry = wait_until(
        lambda: (
            (r := stack.sim.post(f"/api/events/{event['event_id']}/retry")).status_code
            == 200
            and r
        ),
        timeout=20,
    )

    number = retry.json()["attempt"]
    attempts = _attempts(stack, event["event_id"])
    retried = [a for a in attempts if a["delivery_attempt"] == number]
    assert failed["signature_valid"] is False
    assert failed["status_code"] == 401
    assert len(retried) == 1
    assert retried[0]["signature_valid"] is True
    assert retried[0]["status_code"] == 200
    assert len(stack.sim_events(order_id=order["id"], type=event["type"])) == 1


def test_dev_order_lifecycle(stack: RunningStack) -> None:
    """Create, pay and refund through /api/dev/ reach Ventra and its webhooks."""
    created = stack.sim.post("/api/dev/orders", json={"amount": 2500, "env": "local"})
    order_id = created.json()["id"]

    paid = stack.sim.post(f"/api/dev/orders/{order_id}/pay")
    refunded = stack.sim.post(
        f"/api/dev/orders/{order_id}/refund", json={"amount": 500}
    )

    view = wait_until(
        lambda: (
            (r := stack.sim.get(f"/api/orders/{order_id}")).status_code == 200
            and r.json()["refunded_amount"] == 500
            and r.json()
        ),
        timeout=15,
    )
    assert created.status_code == 201
    assert paid.status_code == 200
    assert refunded.status_code == 200
    assert view["held_amount"] == 2000


def test_dev_release_conflict_passed_on(stack: RunningStack) -> None:
    """Ventra's 409 reaches the caller with Ventra's code and message."""
    order = stack.create_order()
    direct = stack.ventra.post(f"/v1/orders/{order['id']}/release")

    response = stack.sim.post(f"/api/dev/orders/{order['id']}/release")

    assert direct.status_code == 409
    assert response.status_code == 409
    assert response.json()["error"] == direct.json()["error"]
    assert response.json()["message"] == direct.json()["message"]


def test_dev_request_headers_override(stack: RunningStack) -> None:
    """x-api-base-url and x-api-key of the request override the saved ones."""
    saved = {"base_url": f"http://127.0.0.1:{_closed_port()}", "api_key": "x"}
    stack.sim.put("/api/connection", json=saved)
    assert stack.info.ventra_url is not None
    headers = {"x-api-base-url": stack.info.ventra_url, "x-api-key": stack.info.api_key}

    good = stack.sim.post("/api/dev/orders", json={"amount": 100}, headers=headers)
    wrong_key = stack.sim.post(
        "/api/dev/orders",
        json={"amount": 100},
        headers={**headers, "x-api-key": "nope"},
    )

    assert good.status_code == 201
    assert wrong_key.status_code == 401


def _closed_port() -> int:
    """Open a port on 127.0.0.1, close it, and return its number."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def test_dev_ventra_unreachable_502(stack: RunningStack) -> None:
    """Ventra unreachable is 502 with a message naming the URL tried."""
    url = f"http://127.0.0.1:{_closed_port()}"

    response = stack.sim.post(
        "/api/dev/orders/ord_x/pay", headers={"x-api-base-url": url}
    )

    assert response.status_code == 502
    assert response.json()["error"] == "ventra_unreachable"
    assert f"{url}/v1/orders/ord_x/pay" in response.json()["message"]


@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1", "not a url", "http://"])
def test_dev_invalid_base_url(stack: RunningStack, base_url: str) -> None:
    """A base URL that is not http(s) with a host is rejected before calling."""
    response = stack.sim.post(
        "/api/dev/orders/ord_x/pay", headers={"x-api-base-url": base_url}
    )

    assert response.status_code == 422


def test_dev_order_id_quoted(stack: RunningStack) -> None:
    """An order id with URL characters stays one path segment at Ventra."""
    response = stack.sim.post("/api/dev/orders/ord%3Fx%3D1/pay")

    assert response.status_code == 404
    assert "ord?x=1" in response.json()["message"]


class _FailingVentra(BaseHTTPRequestHandler):
    """A server on 127.0.0.1 that responds 500 to every POST, as a failing Ventra."""

    def do_POST(self) -> None:
        body = b'{"error": "internal_error", "message": "ledger unavailable"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_dev_ventra_5xx_is_502(stack: RunningStack) -> None:
    """A 5xx from Ventra reaches the caller as 502 with Ventra's message."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingVentra)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        response = stack.sim.post(
            "/api/dev/orders/ord_x/pay", headers={"x-api-base-url": url}
        )
    finally:
        server.shutdown()
        server.server_close()

    assert response.status_code == 502
    assert response.json()["error"] == "ventra_error"
    assert "ledger unavailable" in response.json()["message"]
    assert response.json()["ventra_status"] == 500
