"""The receiver stores every request once and never returns 5xx for bad input."""

from __future__ import annotations

import base64
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from tests.conftest import wait_until
from tests.sim.conftest import SECRETS, Sim, encode, make_event, sign

LIMIT = 256 * 1024
EVENT = encode(make_event("ord_odd", 1))
LOCAL = SECRETS["local"]


def signed(body: bytes, **extra: Any) -> dict[str, Any]:
    return {"X-Signature": sign(LOCAL, body), **extra}


# (case id, env, body, headers or None for signed, expected status)
ODD_REQUESTS = [
    ("unknown_env", "production", EVENT, None, 404),
    ("nul_in_env", "lo%00cal", EVENT, None, 404),
    ("empty_body", "local", b"", None, 400),
    ("not_json", "local", b"hello", None, 400),
    ("not_utf8", "local", b'{"id":"\xff\xfe"}', None, 400),
    ("json_array", "local", b"[1, 2]", None, 400),
    ("no_event_id", "local", b'{"type":"charge.created"}', None, 400),
    ("id_with_newline", "local", b'{"id":"a\\nb","type":"t"}', None, 400),
    ("nan", "local", b'{"id":"evt_nan","type":"t","x":NaN}', None, 400),
    ("huge_exponent", "local", b'{"id":"evt_exp","type":"t","x":1e999999}', None, 400),
    (
        "huge_integer",
        "local",
        b'{"id":"evt_int","type":"t","x":' + b"9" * 5000 + b"}",
        None,
        400,
    ),
    (
        "deep_nesting",
        "local",
        b'{"id":"e","type":"t","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        None,
        400,
    ),
    (
        "nul_escapes",
        "local",
        b'{"id":"evt_nul","type":"t","\\u0000":"a\\u0000b","y":"\\\\u0000"}',
        None,
        200,
    ),
    (
        "lone_surrogate",
        "local",
        b'{"id":"evt_sur","type":"t","x":"\\ud800"}',
        None,
        200,
    ),
    ("names_lowercase", "local", EVENT, {"x-signature": sign(LOCAL, EVENT)}, 200),
    ("names_uppercase", "local", EVENT, {"X-SIGNATURE": sign(LOCAL, EVENT)}, 200),
    (
        "sig_uppercase_hex",
        "local",
        EVENT,
        {"X-Signature": sign(LOCAL, EVENT).upper()},
        401,
    ),
    (
        "sig_base64",
        "local",
        EVENT,
        {"X-Signature": base64.b64encode(bytes.fromhex(sign(LOCAL, EVENT))).decode()},
        401,
    ),
    (
        "sig_sha256_prefix",
        "local",
        EVENT,
        {"X-Signature": "sha256=" + sign(LOCAL, EVENT)},
        401,
    ),
    ("sig_non_ascii", "local", EVENT, {"X-Signature": "é".encode() * 64}, 401),
    ("sig_missing", "local", EVENT, {}, 401),
    ("sig_twice", "local", EVENT, [("X-Signature", sign(LOCAL, EVENT))] * 2, 401),
    ("over_limit", "local", b"{" + b" " * LIMIT + b"}", None, 413),
    (
        "odd_header_bytes",
        "local",
        EVENT,
        signed(EVENT, **{"X-Odd": b"\xff\xfe caf\xc3\xa9 \x80"}),
        200,
    ),
    (
        "gzip_encoding",
        "local",
        b"\x1f\x8b garbage",
        signed(b"\x1f\x8b garbage", **{"Content-Encoding": "gzip"}),
        400,
    ),
    (
        "odd_timestamp",
        "local",
        EVENT,
        signed(
            EVENT,
            **{
                "webhook-id": "x",
                "webhook-timestamp": "²".encode(),
                "webhook-signature": "v1,x",
            },
        ),
        200,
    ),
    (
        "odd_attempt_number",
        "local",
        EVENT,
        signed(EVENT, **{"X-Ventra-Attempt": "²".encode()}),
        200,
    ),
    (
        "foreign_origin",
        "local",
        EVENT,
        signed(EVENT, Origin="http://evil.example"),
        403,
    ),
    ("foreign_host", "local", EVENT, signed(EVENT, Host="evil.example"), 421),
]


@pytest.mark.parametrize(
    ("env", "body", "headers", "expected"),
    [case[1:] for case in ODD_REQUESTS],
    ids=[case[0] for case in ODD_REQUESTS],
)
def test_odd_request_stored_once(
    sim: Sim, env: str, body: bytes, headers: Any, expected: int
) -> None:
    """An odd request gets its 4xx or 200, never a 5xx, and one attempt."""
    before = sim.attempt_count()

    response = sim.post(env, body, signed(body) if headers is None else headers)

    assert response.status_code == expected, response.text
    assert response.status_code < 500
    assert sim.attempt_count() == before + 1


def test_odd_requests_table_size() -> None:
    """The table of odd requests covers at least twenty cases."""
    assert len(ODD_REQUESTS) >= 20


def test_get_request_stored(sim: Sim) -> None:
    """A GET on the receiver returns 405 and is stored."""
    before = sim.attempt_count()

    response = sim.http.get("/api/webhooks/ventra/local")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert sim.attempt_count() == before + 1
    assert sim.last_attempt()["method"] == "GET"


def test_over_limit_body_recorded(sim: Sim) -> None:
    """A body over the limit keeps its first bytes and its full size."""
    body = b"x" * (LIMIT + 1000)

    response = sim.post("local", body, signed(body))

    attempt = sim.last_attempt()
    assert response.status_code == 413
    assert attempt["outcome"] == "too_large"
    assert attempt["body_size"] == LIMIT + 1000
    with sim.running.databases.sim_conn() as conn:
        row = conn.execute("SELECT length(body) FROM attempts").fetchone()
    assert row == (LIMIT,)


def test_nul_escapes_stored_clean(sim: Sim) -> None:
    """An event with NUL escapes is stored without the NUL characters."""
    body = b'{"id":"evt_nul","type":"t","k":"a\\u0000b"}'

    sim.post("local", body, signed(body))

    event = sim.api.get("/api/events/evt_nul").json()
    assert event["payload"]["k"] == "ab"


def test_attempt_records_request(sim: Sim) -> None:
    """An attempt stores the headers, raw body, event, mode and verdict."""
    body = encode(make_event("ord_rec", 3, event_type="charge.paid", status="held"))
    headers = [
        ("X-Signature", sign(LOCAL, body)),
        ("X-Ventra-Attempt", "2"),
        ("X-Repeated", "one"),
        ("X-Repeated", "two"),
    ]

    response = sim.post("local", body, headers)

    attempt = sim.api.get("/api/events/evt_ord_rec_3").json()["attempts"][0]
    names = [name.lower() for name, _ in attempt["headers"]]
    assert response.status_code == 200
    assert ["x-repeated", "one"] in [[n.lower(), v] for n, v in attempt["headers"]]
    assert names.count("x-repeated") == 2
    assert attempt["body"] == body.decode()
    assert attempt["event_type"] == "charge.paid"
    assert attempt["order_id"] == "ord_rec"
    assert attempt["delivery_attempt"] == 2
    assert attempt["signature_valid"] is True
    assert attempt["mode"] == "normal"
    assert attempt["status_code"] == 200
    assert attempt["held_ms"] >= 0


def test_repeat_delivery_adds_attempt(sim: Sim) -> None:
    """A repeated event adds an attempt, never a second event."""
    event = make_event("ord_rep", 1)

    first = sim.deliver(event)
    second = sim.deliver(event)

    stored = sim.api.get(f"/api/events/{event['id']}").json()
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert stored["attempt_count"] == 2
    assert len(stored["attempts"]) == 2


@pytest.mark.parametrize(
    ("signature", "expected_error"),
    [
        ("wrong", "does not match"),
        ("upper", "uppercase"),
        ("prefixed", "sha256="),
        ("missing", "missing"),
    ],
)
def test_signature_error_recorded(
    sim: Sim, signature: str, expected_error: str
) -> None:
    """Each kind of bad X-Signature is recorded with a reason."""
    body = encode(make_event("ord_sig", 1))
    good = sign(LOCAL, body)
    values = {
        "wrong": sign("another-secret", body),
        "upper": good.upper(),
        "prefixed": "sha256=" + good,
    }
    headers = {"X-Signature": values[signature]} if signature in values else {}

    response = sim.post("local", body, headers)

    attempt = sim.last_attempt()
    assert response.status_code == 401
    assert attempt["signature_valid"] is False
    assert expected_error in attempt["signature_error"]


def _standard_headers(secret: str, body: bytes, offset: int) -> dict[str, str]:
    moment = datetime.fromtimestamp(time.time() + offset, tz=UTC)
    signature = Webhook(secret).sign("evt_std", moment, body.decode())
    return {
        "webhook-id": "evt_std",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


@pytest.mark.parametrize(
    ("offset", "drop", "expected_valid", "expected_error"),
    [
        (0, None, True, None),
        (-1000, None, False, "behind"),
        (1000, None, False, "ahead of"),
        (0, "webhook-id", False, "webhook-id missing"),
    ],
    ids=["valid", "too_old", "too_new", "missing_id"],
)
def test_standard_signature_recorded(
    sim: Sim,
    offset: int,
    drop: str | None,
    expected_valid: bool,
    expected_error: str | None,
) -> None:
    """The Standard Webhooks result is stored beside the X-Signature one."""
    body = encode(make_event("ord_std", 1, event_id="evt_std"))
    headers = {
        "X-Signature": sign(LOCAL, body),
        **_standard_headers(LOCAL, body, offset),
    }
    if drop:
        del headers[drop]

    response = sim.post("local", body, headers)

    attempt = sim.last_attempt()
    assert response.status_code == 200
    assert attempt["signature_valid"] is True
    assert attempt["standard_signature_valid"] is expected_valid
    if expected_error is None:
        assert attempt["standard_signature_error"] is None
    else:
        assert expected_error in attempt["standard_signature_error"]


def test_standard_absent_recorded_none(sim: Sim) -> None:
    """Without Standard Webhooks headers their result is stored as None."""
    sim.deliver(make_event("ord_nostd", 1))

    assert sim.last_attempt()["standard_signature_valid"] is None


def test_log_line_per_attempt(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    """Each attempt logs one INFO line with ids and no secret or signature."""
    caplog.set_level(logging.INFO, logger="sim.receiver")
    bodies = [encode(make_event("ord_log", n)) for n in (1, 2, 3)]

    for body in bodies:
        sim.post("local", body, signed(body))

    lines = [r.getMessage() for r in caplog.records if r.name == "sim.receiver"]
    assert len(lines) == 3
    assert all(
        "attempt_id=" in line and "event_id=evt_ord_log" in line for line in lines
    )
    assert not any(LOCAL in line for line in lines)
    assert not any(sign(LOCAL, body) in " ".join(lines) for body in bodies)


TOKEN_CHARS = (
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Headers that frame the HTTP message, and those aiohttp rejects when repeated:
# the HTTP layer handles them, so such a request never reaches the receiver.
FRAMING = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "te",
    "upgrade",
    "keep-alive",
    "trailer",
}
SINGLETONS = {
    "content-location",
    "content-range",
    "content-type",
    "etag",
    "max-forwards",
    "server",
    "user-agent",
}
VALUE_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
header_names = st.one_of(
    st.sampled_from(
        [
            "X-Signature",
            "x-signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "X-Ventra-Attempt",
            "Content-Type",
            "Content-Encoding",
            "Origin",
        ]
    ),
    st.text(TOKEN_CHARS, min_size=1, max_size=20),
).filter(lambda name: name.lower() not in FRAMING)
header_values = st.lists(
    st.sampled_from([bytes([b]) for b in VALUE_BYTES] + [b" "]), max_size=80
).map(lambda parts: b"".join(parts).strip(b" "))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    env=st.sampled_from(["local", "sandbox", "staging", "prod", "x%20y", "%ff"]),
    body=st.binary(max_size=2048),
    headers=st.lists(
        st.tuples(header_names, header_values),
        max_size=8,
        unique_by=lambda h: h[0].lower() if h[0].lower() in SINGLETONS else h,
    ),
)
def test_random_requests_all_stored(
    sim: Sim, env: str, body: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """Random bodies and headers: every request gets a status below 500 and is stored."""
    before = sim.attempt_count()

    response = sim.post(env, body, headers)

    assert response.status_code < 500, response.text
    assert sim.attempt_count() == before + 1


def test_body_is_raw_bytes(sim: Sim) -> None:
    """The stored body is the exact bytes received, not re-encoded JSON."""
    body = b'{ "id" : "evt_raw" , "type" : "t" }'

    sim.post("local", body, signed(body))

    with sim.running.databases.sim_conn() as conn:
        row = conn.execute("SELECT body FROM attempts").fetchone()
    assert row is not None
    assert bytes(row[0]) == body


def test_disconnect_mid_body_stored(sim: Sim) -> None:
    """A sender that hangs up halfway through the body still leaves an attempt."""
    url = httpx.URL(sim.running.info.sim_url or "")
    before = sim.attempt_count()
    head = (
        "POST /api/webhooks/ventra/local HTTP/1.1\r\n"
        f"Host: {url.host}:{url.port}\r\nContent-Length: 1000\r\n\r\n"
    )

    with socket.create_connection((url.host, url.port or 0), timeout=5) as client:
        client.sendall(head.encode() + b'{"id": "evt_half"')

    wait_until(lambda: sim.attempt_count() == before + 1, timeout=10)
    attempt = sim.last_attempt()
    assert attempt["outcome"] == "sender_disconnected"
    assert attempt["status_code"] is None
    assert attempt["body_size"] == 17
