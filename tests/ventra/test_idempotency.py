"""Idempotency-Key: a repeated POST returns the first response, once."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.ventra.idempotency import ABANDONED_AFTER
from tests.conftest import RunningStack


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def order_count(stack: RunningStack) -> int:
    return len(stack.ventra.get("/v1/orders", params={"limit": 500}).json()["data"])


def test_create_replayed(stack: RunningStack) -> None:
    """The same key and body returns the first 201 and creates one order."""
    headers = key()

    first = stack.ventra.post("/v1/orders", json={"amount": 990}, headers=headers)
    second = stack.ventra.post("/v1/orders", json={"amount": 990}, headers=headers)

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert order_count(stack) == 1


def test_other_body_rejected(stack: RunningStack) -> None:
    """The same key with another body is a 422 with a stable code."""
    headers = key()
    stack.ventra.post("/v1/orders", json={"amount": 990}, headers=headers)

    response = stack.ventra.post("/v1/orders", json={"amount": 991}, headers=headers)

    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert headers["Idempotency-Key"] in response.json()["message"]
    assert order_count(stack) == 1


def test_conflict_replayed(stack: RunningStack) -> None:
    """A stored 409 is replayed as the same 409, not run again."""
    order = stack.create_order(500)
    headers = key()

    first = stack.ventra.post(f"/v1/orders/{order['id']}/release", headers=headers)
    stack.ventra.post(f"/v1/orders/{order['id']}/pay")
    second = stack.ventra.post(f"/v1/orders/{order['id']}/release", headers=headers)

    assert first.status_code == 409
    assert second.status_code == 409
    assert second.content == first.content


def test_release_replayed(stack: RunningStack) -> None:
    """A repeated release returns the first 200 instead of a 409."""
    order = stack.paid_order(500)
    headers = key()

    first = stack.ventra.post(f"/v1/orders/{order['id']}/release", headers=headers)
    second = stack.ventra.post(f"/v1/orders/{order['id']}/release", headers=headers)

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json() == first.json()


@pytest.mark.parametrize("requests", [2, 8])
def test_simultaneous_requests(stack: RunningStack, requests: int) -> None:
    """Requests with one key that arrive at once cause one effect."""
    headers = {**stack.ventra.headers, **key()}

    def send(_: int) -> httpx.Response:
        with httpx.Client(
            base_url=str(stack.ventra.base_url), headers=headers
        ) as client:
            return client.post("/v1/orders", json={"amount": 1234})

    with ThreadPoolExecutor(max_workers=requests) as pool:
        responses = list(pool.map(send, range(requests)))

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert order_count(stack) == 1


def test_key_per_path(stack: RunningStack) -> None:
    """One key on two routes is two requests."""
    headers = key()
    order = stack.create_order(800)

    pay = stack.ventra.post(f"/v1/orders/{order['id']}/pay", headers=headers)
    release = stack.ventra.post(f"/v1/orders/{order['id']}/release", headers=headers)

    assert pay.status_code == 200
    assert release.json()["status"] == "released"


def test_failed_request_not_stored(stack_factory) -> None:  # type: ignore[no-untyped-def]
    """A request that fails with a 500 leaves the key free for a retry."""
    armed = {"on": True}

    async def fail(step: str) -> None:
        if armed["on"]:
            raise RuntimeError("injected failure")

    stack = stack_factory(ventra_hooks={"before_commit": fail})
    headers = key()

    first = stack.ventra.post("/v1/orders", json={"amount": 700}, headers=headers)
    armed["on"] = False
    second = stack.ventra.post("/v1/orders", json={"amount": 700}, headers=headers)

    assert first.status_code == 500
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers


def test_rejected_request_frees_key(stack: RunningStack) -> None:
    """A request rejected for its form does not keep the key."""
    headers = key()
    body = b'{"amount": 100}'

    rejected = stack.ventra.post(
        "/v1/orders", content=body, headers={**headers, "Content-Type": "text/plain"}
    )
    corrected = stack.ventra.post(
        "/v1/orders",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )

    assert rejected.status_code == 415
    assert corrected.status_code == 201
    assert "Idempotent-Replayed" not in corrected.headers


def store_old_row(
    stack: RunningStack, idempotency_key: str, body: bytes, status: int | None
) -> None:
    """Insert a row for a key on POST /v1/orders, older than ABANDONED_AFTER."""
    created_at = datetime.now(UTC) - ABANDONED_AFTER - timedelta(seconds=10)
    response_body = None if status is None else b'{"stored": true}'
    with stack.databases.ventra_conn() as conn:
        conn.execute(
            "INSERT INTO idempotency_keys (key, method, path, request_hash, status,"
            " response_body, created_at) VALUES (%s, 'POST', '/v1/orders', %s, %s,"
            " %s, %s)",
            (
                idempotency_key,
                hashlib.sha256(body).hexdigest(),
                status,
                response_body,
                created_at,
            ),
        )


def test_abandoned_claim_taken_over(stack: RunningStack) -> None:
    """A claim with no response, left by a crash, is dropped and claimed anew."""
    headers = key()
    body = b'{"amount": 100}'
    store_old_row(stack, headers["Idempotency-Key"], body, status=None)

    response = stack.ventra.post(
        "/v1/orders",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert order_count(stack) == 1


def test_old_response_replayed(stack: RunningStack) -> None:
    """A stored response is replayed however old it is."""
    headers = key()
    body = b'{"amount": 100}'
    store_old_row(stack, headers["Idempotency-Key"], body, status=201)

    response = stack.ventra.post(
        "/v1/orders",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 201
    assert response.content == b'{"stored": true}'
    assert response.headers["Idempotent-Replayed"] == "true"
    assert order_count(stack) == 0


def test_duplicate_api_key_header(stack: RunningStack) -> None:
    """Two x-api-key headers are rejected even if one is right."""
    response = httpx.get(
        f"{stack.info.ventra_url}/v1/orders",
        headers=[("x-api-key", stack.info.api_key), ("x-api-key", "wrong")],
    )

    assert response.status_code == 401
    assert "once" in response.json()["message"]
