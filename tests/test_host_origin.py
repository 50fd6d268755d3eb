"""Both servers reject requests a web page could send: foreign Host or Origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import URL

from tests.conftest import RunningStack
from tests.ventra.conftest import module_stack


@pytest.fixture(scope="module")
def shared_stack(
    pg_server: URL,
    templates: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningStack]:
    """One stack for the header tables, which change nothing."""
    with module_stack(pg_server, templates, tmp_path_factory.mktemp("guard")) as stack:
        yield stack


# (server, path that needs no credentials)
SERVERS = [("ventra", "/health"), ("sim", "/api/health")]


def base_url(stack: RunningStack, server: str) -> str:
    url = stack.info.ventra_url if server == "ventra" else stack.info.sim_url
    assert url is not None
    return url


# The status and error code of the response to a foreign value of each header.
REJECTIONS = {"Host": (421, "misdirected_request"), "Origin": (403, "forbidden_origin")}
# {port} in a value is replaced by the served port.
FOREIGN_HEADERS = [
    pytest.param("Host", "attacker.example", id="host_name"),
    pytest.param("Host", "attacker.example:{port}", id="host_rebinding"),
    pytest.param("Host", "127.0.0.1.nip.io:{port}", id="host_rebinding_ip_name"),
    pytest.param("Host", "127.0.0.1:1", id="host_other_port"),
    pytest.param("Host", "0.0.0.0:{port}", id="host_any_address"),
    pytest.param("Host", "", id="host_empty"),
    pytest.param("Origin", "https://attacker.example", id="origin_site"),
    pytest.param("Origin", "http://attacker.example:{port}", id="origin_rebinding"),
    pytest.param("Origin", "null", id="origin_null"),
    pytest.param("Origin", "http://127.0.0.1:1", id="origin_other_port"),
    pytest.param("Origin", "https://127.0.0.1:{port}", id="origin_other_scheme"),
]


@pytest.mark.parametrize(("server", "path"), SERVERS)
@pytest.mark.parametrize(("header", "value"), FOREIGN_HEADERS)
def test_foreign_header(
    shared_stack: RunningStack, server: str, path: str, header: str, value: str
) -> None:
    """A foreign Host is a JSON 421 and a foreign Origin a JSON 403."""
    url = base_url(shared_stack, server)
    headers = {header: value.format(port=urlsplit(url).port)}
    status, error = REJECTIONS[header]

    with httpx.Client(base_url=url) as client:
        response = client.get(path, headers=headers)

    assert response.status_code == status
    assert response.json()["error"] == error


@pytest.mark.parametrize(("server", "path"), SERVERS)
@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_own_address(
    shared_stack: RunningStack, server: str, path: str, name: str
) -> None:
    """The served address, as Host and as Origin, is accepted."""
    url = base_url(shared_stack, server)
    own = f"{name}:{urlsplit(url).port}"

    with httpx.Client(base_url=url) as client:
        response = client.get(path, headers={"Host": own, "Origin": f"http://{own}"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("server", "path", "body"),
    [
        ("ventra", "/v1/orders", {"amount": 100}),
        ("sim", "/api/dev/orders", {"amount": 100, "env": "local"}),
    ],
    ids=["ventra_order", "sim_merchant_action"],
)
def test_guard_before_auth(
    stack: RunningStack, server: str, path: str, body: dict[str, Any]
) -> None:
    """A foreign Origin is rejected even with valid credentials, before any change."""
    client = stack.ventra if server == "ventra" else stack.sim

    response = client.post(
        path, json=body, headers={"Origin": "https://attacker.example"}
    )

    assert response.status_code == 403
    assert stack.ventra.get("/v1/orders").json()["data"] == []


def test_clients_work(stack: RunningStack) -> None:
    """The app's own clients, which send no Origin, are served on both sides."""
    order = stack.paid_order(100)

    assert order["status"] == "held"
    assert stack.sim.get("/api/endpoints").status_code == 200
