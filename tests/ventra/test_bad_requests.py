"""Bad requests get a 4xx JSON error with a code and a message, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack

JSON = {"Content-Type": "application/json"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


# (case, method, path, content bytes or None, extra headers, expected status)
CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    ("json_cut_short", "POST", "/v1/orders", b'{"amount":', JSON, 400),
    ("json_array", "POST", "/v1/orders", b"[1999]", JSON, 400),
    ("json_string", "POST", "/v1/orders", b'"1999"', JSON, 400),
    ("json_nan", "POST", "/v1/orders", b'{"amount": NaN}', JSON, 400),
    ("json_trailing", "POST", "/v1/orders", b'{"amount": 1} x', JSON, 400),
    ("json_deep", "POST", "/v1/orders", b"[" * 200_000, JSON, 400),
    ("not_utf8", "POST", "/v1/orders", b'\xff\xfe{"amount": 1}', JSON, 400),
    (
        "latin1",
        "POST",
        "/v1/orders",
        '{"amount": 1, "description": "São"}'.encode("latin-1"),
        JSON,
        400,
    ),
    (
        "body_2mb",
        "POST",
        "/v1/orders",
        b'{"description": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        JSON,
        413,
    ),
    (
        "text_plain",
        "POST",
        "/v1/orders",
        body({"amount": 1}),
        {"Content-Type": "text/plain"},
        415,
    ),
    ("no_content_type", "POST", "/v1/orders", body({"amount": 1}), {}, 415),
    (
        "form",
        "POST",
        "/v1/orders",
        b"amount=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    ("amount_text", "POST", "/v1/orders", body({"amount": "19.99"}), JSON, 422),
    ("amount_missing", "POST", "/v1/orders", body({}), JSON, 422),
    ("unknown_field", "POST", "/v1/orders", body({"amount": 1, "x": 1}), JSON, 422),
    (
        "description_long",
        "POST",
        "/v1/orders",
        body({"amount": 1, "description": "d" * 201}),
        JSON,
        422,
    ),
    (
        "description_nul",
        "POST",
        "/v1/orders",
        body({"amount": 1, "description": "a\u0000b"}),
        JSON,
        422,
    ),
    (
        "description_number",
        "POST",
        "/v1/orders",
        body({"amount": 1, "description": 5}),
        JSON,
        422,
    ),
    (
        "env_unknown",
        "POST",
        "/v1/orders",
        body({"amount": 1, "env": "prod"}),
        JSON,
        422,
    ),
    (
        "expires_zero",
        "POST",
        "/v1/orders",
        body({"amount": 1, "expires_in": 0}),
        JSON,
        422,
    ),
    (
        "expires_huge",
        "POST",
        "/v1/orders",
        body({"amount": 1, "expires_in": 10**12}),
        JSON,
        422,
    ),
    ("pay_unknown", "POST", "/v1/orders/ord_unknown/pay", None, {}, 404),
    ("release_unknown", "POST", "/v1/orders/ord_unknown/release", None, {}, 404),
    ("refund_unknown", "POST", "/v1/orders/ord_unknown/refund", None, {}, 404),
    ("get_unknown", "GET", "/v1/orders/ord_unknown", None, {}, 404),
    ("id_odd_chars", "GET", "/v1/orders/ord%00%27%22", None, {}, 404),
    ("id_long", "GET", "/v1/orders/" + "o" * 5000, None, {}, 404),
    ("event_unknown", "GET", "/v1/events/evt_unknown", None, {}, 404),
    ("deliveries_unknown", "GET", "/v1/events/evt_unknown/deliveries", None, {}, 404),
    ("retry_unknown", "POST", "/v1/events/evt_unknown/retry", None, {}, 404),
    (
        "endpoint_env_unknown",
        "PUT",
        "/v1/webhook-endpoints/prod",
        body({"enabled": True}),
        JSON,
        404,
    ),
    (
        "endpoint_url_ftp",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "ftp://example.invalid/x"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_no_host",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http:///x"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_port_high",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http://127.0.0.1:99999/x"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_port_zero",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http://127.0.0.1:0/x"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_bad_host",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http://%ff%00/x"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_space",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http://127.0.0.1:8000/a b"}),
        JSON,
        422,
    ),
    (
        "endpoint_secret_short",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"secret": "short"}),
        JSON,
        422,
    ),
    (
        "endpoint_secret_spaces",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"secret": " whsec_with_space "}),
        JSON,
        422,
    ),
    (
        "endpoint_secret_c1_control",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"secret": "whsec_abcdefgh\x85"}),
        JSON,
        422,
    ),
    (
        "endpoint_enabled_text",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"enabled": "yes"}),
        JSON,
        422,
    ),
    (
        "bulk_retry_since_number_text",
        "POST",
        "/v1/events/retry",
        body({"env": "sandbox", "since": "0"}),
        JSON,
        422,
    ),
    (
        "endpoint_url_password",
        "PUT",
        "/v1/webhook-endpoints/local",
        body({"url": "http://user:pw@127.0.0.1:8000/x"}),
        JSON,
        422,
    ),
    (
        "bulk_retry_since_number",
        "POST",
        "/v1/events/retry",
        body({"env": "sandbox", "since": 0.0}),
        JSON,
        422,
    ),
    ("br_code_number", "POST", "/v1/pix/pay", body({"br_code": 123}), JSON, 422),
    ("br_code_long", "POST", "/v1/pix/pay", body({"br_code": "0" * 600}), JSON, 422),
    (
        "br_code_garbage",
        "POST",
        "/v1/pix/pay",
        body({"br_code": "not a code"}),
        JSON,
        422,
    ),
    (
        "br_code_accents",
        "POST",
        "/v1/pix/pay",
        body({"br_code": "çççççççççç"}),
        JSON,
        422,
    ),
    ("events_type_unknown", "GET", "/v1/events?type=charge.lost", None, {}, 422),
    ("events_limit_zero", "GET", "/v1/events?limit=0", None, {}, 422),
    ("events_limit_text", "GET", "/v1/events?limit=ten", None, {}, 422),
    ("events_limit_superscript", "GET", "/v1/events?limit=%C2%B2", None, {}, 422),
    (
        "events_cursor_unknown",
        "GET",
        "/v1/events?starting_after=evt_gone",
        None,
        {},
        404,
    ),
    ("orders_env_unknown", "GET", "/v1/orders?env=prod", None, {}, 422),
    ("orders_status_unknown", "GET", "/v1/orders?status=lost", None, {}, 422),
    ("ledger_limit_huge", "GET", "/v1/ledger/transactions?limit=5000", None, {}, 422),
    (
        "rotate_key_short",
        "POST",
        "/settings/api-key",
        body({"api_key": "short"}),
        JSON,
        422,
    ),
    (
        "bulk_retry_naive",
        "POST",
        "/v1/events/retry",
        body({"env": "local", "since": "2026-01-01T00:00:00"}),
        JSON,
        422,
    ),
    (
        "idempotency_key_long",
        "POST",
        "/v1/orders",
        body({"amount": 1}),
        {**JSON, "Idempotency-Key": "k" * 300},
        422,
    ),
    ("unknown_route", "GET", "/v1/nothing", None, {}, 404),
    ("wrong_method", "DELETE", "/v1/orders", None, {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request(
    shared_stack: RunningStack,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
    status: int,
) -> None:
    """The request is rejected with the expected 4xx and a JSON error."""
    response = shared_stack.ventra.request(
        method, path, content=content, headers=headers
    )

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"x-api-key": ""}, 401), ({"x-api-key": "wrong-key"}, 401)],
    ids=["empty_key", "wrong_key"],
)
def test_bad_api_key(
    shared_stack: RunningStack, headers: dict[str, str], status: int
) -> None:
    """A missing or wrong API key is a JSON 401."""
    response = shared_stack.ventra.get("/v1/orders", headers=headers)

    assert response.status_code == status
    assert response.json()["error"] == "unauthorized"


def test_missing_api_key(shared_stack: RunningStack) -> None:
    """A request with no x-api-key is a 401 that names the header."""
    with httpx.Client(base_url=str(shared_stack.ventra.base_url)) as client:
        response = client.get("/v1/orders")

    assert response.status_code == 401
    assert "x-api-key" in response.json()["message"]


def test_field_named(shared_stack: RunningStack) -> None:
    """A 422 names the invalid field in ``field`` and in the message."""
    response = shared_stack.ventra.post(
        "/v1/orders", json={"amount": 1, "expires_in": 0}
    )

    assert response.json()["field"] == "expires_in"
    assert "expires_in" in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "payload", "fix"),
    [
        (
            "/v1/events/retry",
            {"env": "local", "since": "yesterday"},
            "RFC 3339 date-time",
        ),
        (
            "/v1/events/retry",
            {"env": "local", "since": "2026-01-01T00:00:00"},
            "RFC 3339 date-time",
        ),
        (
            "/v1/events/retry",
            {"env": "local", "since": "1700000000"},
            "RFC 3339 date-time",
        ),
        ("/v1/webhook-endpoints/local", {"url": "http://%ff/x"}, "host name"),
        ("/v1/webhook-endpoints/local", {"url": "http://[::1/"}, "host name"),
        ("/v1/webhook-endpoints/local", {"url": "http://a/ b"}, "printable ASCII"),
    ],
    ids=[
        "since_text",
        "since_naive",
        "since_unix",
        "url_host",
        "url_bracket",
        "url_space",
    ],
)
def test_message_names_fix(
    shared_stack: RunningStack, path: str, payload: dict[str, str], fix: str
) -> None:
    """A 422 for a date-time or a URL describes a valid value."""
    method = "PUT" if path.startswith("/v1/webhook-endpoints") else "POST"
    response = shared_stack.ventra.request(method, path, json=payload)

    assert response.status_code == 422
    assert fix in response.json()["message"]
    assert "Value error" not in response.json()["message"]
