"""Management API: the token, endpoint settings, lists with cursors and filters."""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack
from tests.sim.conftest import Sim, make_event

MANAGEMENT_ROUTES = [
    ("GET", "/api/events"),
    ("GET", "/api/events/evt_x"),
    ("GET", "/api/attempts"),
    ("POST", "/api/events/evt_x/retry"),
    ("GET", "/api/endpoints"),
    ("PUT", "/api/endpoints/local"),
    ("GET", "/api/orders"),
    ("GET", "/api/orders/ord_x"),
    ("GET", "/api/connection"),
    ("PUT", "/api/connection"),
    ("POST", "/api/dev/orders"),
    ("POST", "/api/dev/orders/ord_x/pay"),
    ("POST", "/api/dev/orders/ord_x/release"),
    ("POST", "/api/dev/orders/ord_x/refund"),
]
BAD_AUTHORIZATION = {
    "missing": None,
    "wrong_token": "Bearer vst_wrong",
    "bearer_without_token": "Bearer",
    "lowercase_token": None,
    "basic_scheme": "Basic dXNlcjpwYXNz",
    "odd_bytes": b"Bearer \xff\xfe",
}


@pytest.mark.parametrize(("method", "path"), MANAGEMENT_ROUTES)
def test_route_requires_token(sim: Sim, method: str, path: str) -> None:
    """A management route without the right bearer token returns 401."""
    cases = {
        **BAD_AUTHORIZATION,
        "lowercase_token": f"Bearer {sim.running.info.sim_token}".upper(),
    }

    statuses = {}
    for name, authorization in cases.items():
        headers: dict[bytes, bytes] = {}
        if authorization is not None:
            value = (
                authorization
                if isinstance(authorization, bytes)
                else authorization.encode()
            )
            headers[b"Authorization"] = value
        statuses[name] = sim.http.request(
            method, path, headers=headers, json={}
        ).status_code

    assert statuses == {name: 401 for name in cases}


@pytest.mark.parametrize("path", ["/api/health", "/api/webhooks/ventra/local"])
def test_open_route_needs_no_token(sim: Sim, path: str) -> None:
    """Health and the receiver are open."""
    method = "GET" if path == "/api/health" else "POST"

    response = sim.http.request(method, path, content=b"{}")

    assert response.status_code != 401 or path.startswith("/api/webhooks")
    assert response.status_code < 500


def test_generated_token_file_private(
    stack_factory: Callable[..., RunningStack],
) -> None:
    """A generated token is stored in the data directory with mode 0600."""
    running = stack_factory(run_ventra=False)

    path = running.data_dir / ".runtime" / "sim_token"

    assert path.read_text(encoding="utf-8").strip() == running.info.sim_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configured_token_used(stack_factory: Callable[..., RunningStack]) -> None:
    """VENTRASIM_TOKEN, when set, is the token the API requires."""
    running = stack_factory(run_ventra=False, sim_token="configured-token-123")
    url = running.info.sim_url or ""

    good = httpx.get(
        url + "/api/endpoints", headers={"Authorization": "Bearer configured-token-123"}
    )
    bad = httpx.get(
        url + "/api/endpoints",
        headers={"Authorization": f"Bearer {running.info.sim_token}x"},
    )

    assert good.status_code == 200
    assert bad.status_code == 401


@pytest.mark.parametrize(
    "secret", [" whsec_abc", "whsec_abc ", "whsec_abc\n", "\twhsec_abc"]
)
def test_secret_whitespace_rejected(sim: Sim, secret: str) -> None:
    """A secret with surrounding whitespace is rejected with the reason."""
    response = sim.api.put("/api/endpoints/local", json={"secret": secret})

    assert response.status_code == 422
    assert "whitespace" in response.json()["message"]
    assert sim.secret("local") != secret


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"secret": ""}, 422, "secret"),
        ({"secret": "a\x01b"}, 422, "secret"),
        ({"mode": "broken"}, 422, "mode"),
        ({"mode": "flaky", "options": {"flaky_percent": 101}}, 422, "options"),
        ({"mode": "flaky", "options": {"slow_ms": 10}}, 422, "options"),
        ({"mode": "slow", "options": {"slow_ms": True}}, 422, "options"),
        ({"mode": "status", "options": {"status": 99}}, 422, "options"),
        ({"unknown": 1}, 422, "unknown"),
    ],
)
def test_endpoint_update_rejected(
    sim: Sim, body: dict[str, Any], status: int, field: str
) -> None:
    """Invalid secrets, modes and options are rejected, naming the field."""
    response = sim.api.put("/api/endpoints/local", json=body)

    assert response.status_code == status
    assert response.json()["field"] == field


def test_endpoint_unknown_env(sim: Sim) -> None:
    """Settings of an unknown environment are not found."""
    response = sim.api.put("/api/endpoints/prod", json={"mode": "offline"})

    assert response.status_code == 404


def test_options_merge_within_mode(sim: Sim) -> None:
    """Options sent alone change the mode in force and keep the rest."""
    sim.set_mode("local", "status", status=429, retry_after=5)

    response = sim.api.put("/api/endpoints/local", json={"options": {"status": 410}})

    assert response.json()["options"] == {"status": 410, "retry_after": 5}


def _deliver_mix(sim: Sim) -> None:
    """Deliver seven events over two environments, two of them badly signed."""
    for n in range(5):
        sim.deliver(
            make_event(
                f"ord_p{n % 2}", n + 1, "charge.paid" if n % 2 else "charge.created"
            )
        )
    sim.deliver(make_event("ord_sb", 1, env="sandbox"), env="sandbox")
    sim.deliver(make_event("ord_sb", 2, env="sandbox"), env="sandbox", secret="forged")


def _pages(client: httpx.Client, path: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    for _ in range(20):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=query).json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    return pages


@pytest.mark.parametrize("path", ["/api/events", "/api/attempts"])
def test_cursor_pages_cover_all(sim: Sim, path: str) -> None:
    """Pages of 3 cover all seven items once, newest first."""
    _deliver_mix(sim)

    pages = _pages(sim.api, path, limit=3)

    items = [item for page in pages for item in page]
    key = "event_id" if path == "/api/events" else "id"
    keys = [item[key] for item in items]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert len(set(keys)) == 7
    assert keys == [
        item[key] for item in sim.api.get(path, params={"limit": 10}).json()["data"]
    ]


FILTERS = {
    "env=sandbox": ({"env": "sandbox"}, 2),
    "env=local": ({"env": "local"}, 5),
    "type": ({"type": "charge.paid"}, 2),
    "signature_invalid": ({"signature_valid": "false"}, 1),
    "signature_valid": ({"signature_valid": "true"}, 6),
    "order": ({"order_id": "ord_p0"}, 3),
    "order_and_type": ({"order_id": "ord_p0", "type": "charge.paid"}, 0),
}


@pytest.mark.parametrize("path", ["/api/events", "/api/attempts"])
def test_list_filters(sim: Sim, path: str) -> None:
    """Events and attempts filter by environment, type, signature and order."""
    _deliver_mix(sim)

    counts = {
        name: len(sim.api.get(path, params=params).json()["data"])
        for name, (params, _) in FILTERS.items()
    }

    assert counts == {name: expected for name, (_, expected) in FILTERS.items()}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "x"},
        {"signature_valid": "maybe"},
        {"type": "a\x00b"},
        {"cursor": "evt_unknown"},
        {"env": "prod"},
    ],
)
def test_events_bad_query_rejected(sim: Sim, params: dict[str, str]) -> None:
    """Invalid query values are 422, never a 5xx."""
    response = sim.api.get("/api/events", params=params)

    assert response.status_code == 422


@pytest.mark.parametrize(
    ("path", "item_name"), [("/api/events", "event"), ("/api/orders", "order")]
)
def test_unknown_cursor_rejected(sim: Sim, path: str, item_name: str) -> None:
    """A cursor that names no row is 422, naming the kind of id expected."""
    response = sim.api.get(path, params={"cursor": "evt_unknown"})

    assert response.status_code == 422
    assert response.json()["field"] == "cursor"
    assert f"is not an {item_name} id" in response.json()["message"]


def test_attempts_after_id_live(sim: Sim) -> None:
    """after_id returns the attempts stored since, oldest first."""
    sim.deliver(make_event("ord_live", 1))
    last = sim.last_attempt()["id"]
    sim.deliver(make_event("ord_live", 2))
    sim.deliver(make_event("ord_live", 3))

    data = sim.api.get("/api/attempts", params={"after_id": last}).json()["data"]

    assert [a["id"] for a in data] == [last + 1, last + 2]


def test_event_not_found(sim: Sim) -> None:
    """An unknown event id is 404, a NUL in it too."""
    assert sim.api.get("/api/events/evt_none").status_code == 404
    assert sim.api.get("/api/events/evt%00x").status_code == 404
