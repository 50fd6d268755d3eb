"""End to end: an order paid on Ventra reaches VentraSim signed."""

import asyncio
import hashlib
import hmac
import json
import threading

import httpx
import pytest
from aiohttp import web

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


def test_offline_receiver_gets_retries(stack: RunningStack) -> None:
    """Attempts made while VentraSim is offline are retried until it is back."""
    stack.set_mode("local", "offline")
    order = stack.create_order(amount=29)
    first = wait_until(lambda: stack.ventra.get("/v1/events", params={"order_id": order["id"]}).json()["data"])
    event_id = first[0]["id"]
    wait_until(
        lambda: stack.ventra.get(f"/v1/events/{event_id}/deliveries").json()["delivery"][
            "attempt_count"
        ]
        >= 2,
        timeout=15,
    )
    stack.ventra.post(f"/v1/orders/{order['id']}/pay")

    stack.set_mode("local", "normal")
    events = wait_until(
        lambda: len(found := stack.sim_events(order_id=order["id"])) == 3
        and all(e["signature_valid"] and e["payload_verified"] for e in found)
        and wait_delivered(stack, order["id"])
        and found,
        timeout=30,
    )

    sent = stack.ventra.get(f"/v1/events/{event_id}/deliveries").json()["attempts"]
    received = stack.sim.get("/api/attempts", params={"event_id": event_id}).json()["data"]
    assert [a["attempt"] for a in sent] == list(range(1, len(sent) + 1))
    assert sorted(a["delivery_attempt"] for a in received) == [a["attempt"] for a in sent]
    assert [a["mode"] for a in sorted(received, key=lambda a: a["id"])][0] == "offline"
    assert sent[-1]["status"] == "succeeded"
    assert len(events) == 3


def wait_delivered(stack: RunningStack, order_id: str) -> bool:
    events = stack.ventra.get("/v1/events", params={"order_id": order_id}).json()["data"]
    return len(events) == 3 and all(e["delivery"]["status"] == "delivered" for e in events)


@pytest.mark.parametrize(
    ("body", "headers", "expected_status", "signature_valid"),
    [
        (b'{"id":"evt_x","type":"charge.paid"}', {"X-Signature": "0" * 64}, 401, False),
        (b"\xff\xfe not utf-8", {}, 401, False),
        (b"not json at all", {}, 401, False),
    ],
)
def test_receiver_stores_bad_requests(
    stack: RunningStack,
    body: bytes,
    headers: dict[str, str],
    expected_status: int,
    signature_valid: bool,
) -> None:
    """Wrong signatures and unparsable bodies get 4xx and are stored."""
    response = httpx.post(
        f"{stack.info.sim_url}/api/webhooks/ventra/local",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )

    stored = stack.sim.get("/api/attempts").json()["data"]
    assert response.status_code == expected_status
    assert len(stored) == 1
    assert stored[0]["signature_valid"] is signature_valid
    assert stored[0]["status_code"] == expected_status


def test_signed_wire_bytes(stack: RunningStack) -> None:
    """X-Signature is the HMAC of the exact bytes on the wire, accents included."""
    captured: list[tuple[bytes, dict[str, str]]] = []

    async def capture(request: web.Request) -> web.Response:
        captured.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    receiver = CaptureServer(capture)
    url = receiver.start()
    try:
        secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        response = stack.ventra.put(
            "/v1/webhook-endpoints/sandbox", json={"url": url, "secret": secret}
        )
        assert response.status_code == 200, response.text
        description = "Padaria São João – Açaí"
        stack.create_order(amount=58242, env="sandbox", description=description)
        wait_until(lambda: captured)
    finally:
        receiver.stop()

    body, headers = captured[0]
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    envelope = json.loads(body)
    assert headers["X-Signature"] == expected
    assert description.encode("utf-8") in body
    assert envelope["data"]["description"] == description
    assert list(envelope) != sorted(envelope)
    assert headers["X-Ventra-Attempt"] == "1"
    assert headers["X-Ventra-Event-Id"] == envelope["id"]


class CaptureServer:
    """An aiohttp receiver on 127.0.0.1 in a thread of its own."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def start(self) -> str:
        self.thread.start()

        async def setup() -> str:
            app = web.Application()
            app.router.add_post("/hook", self.handler)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

        return asyncio.run_coroutine_threadsafe(setup(), self.loop).result(10)

    def stop(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
