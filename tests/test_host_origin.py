"""Both servers reject requests a web page could send: foreign Host or Origin."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.mark.parametrize(("server", "path"), SERVERS)
@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "127.0.0.1:1",
        "0.0.0.0:{port}",
        "",
    ],
    ids=[
        "name",
        "rebinding",
        "rebinding_ip_name",
        "other_port",
        "any_address",
        "empty",
    ],
)
def test_foreign_host(
    shared_stack: RunningStack, server: str, path: str, host: str
) -> None:
    """A Host that is not the served address is a JSON 421."""
    url = base_url(shared_stack, server)
    header = host.format(port=urlsplit(url).port)

    with httpx.Client(base_url=url) as client:
        response = client.get(path, headers={"Host": header})

    assert response.status_code == 421
    assert response.json()["error"] == "misdirected_request"


@pytest.mark.parametrize(("server", "path"), SERVERS)
@pytest.mark.parametrize(
    "origin",
    [
        "https://attacker.example",
        "http://attacker.example:{port}",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1:{port}",
    ],
    ids=["site", "rebinding", "null", "other_port", "other_scheme"],
)
def test_foreign_origin(
    shared_stack: RunningStack, server: str, path: str, origin: str
) -> None:
    """An Origin of another site is a JSON 403."""
    url = base_url(shared_stack, server)
    header = origin.format(port=urlsplit(url).port)

    with httpx.Client(base_url=url) as client:
        response = client.get(path, headers={"Origin": header})

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden_origin"


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


def test_guard_before_auth(stack: RunningStack) -> None:
    """A foreign Origin is rejected even with a valid API key, before any change."""
    response = stack.ventra.post(
        "/v1/orders",
        json={"amount": 100},
        headers={"Origin": "https://attacker.example"},
    )

    assert response.status_code == 403
    assert stack.ventra.get("/v1/orders").json()["data"] == []


def test_sim_actions_guarded(stack: RunningStack) -> None:
    """VentraSim's merchant actions reject a foreign Origin too."""
    response = stack.sim.post(
        "/api/dev/orders",
        json={"amount": 100, "env": "local"},
        headers={"Origin": "https://attacker.example"},
    )

    assert response.status_code == 403
    assert stack.ventra.get("/v1/orders").json()["data"] == []


def test_clients_work(stack: RunningStack) -> None:
    """The app's own clients, which send no Origin, are served on both sides."""
    order = stack.paid_order(100)

    assert order["status"] == "held"
    assert stack.sim.get("/api/endpoints").status_code == 200
