"""API key rotation through POST /settings/api-key."""

from __future__ import annotations

import stat

import httpx
import pytest

from app.ventra.keys import ApiKeyStore
from tests.conftest import RunningStack


def client(stack: RunningStack, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=str(stack.ventra.base_url), headers={"x-api-key": api_key}
    )


def test_rotation(stack: RunningStack) -> None:
    """After a rotation the new key works and the old one is a 401 at once."""
    old = stack.info.api_key

    rotated = stack.ventra.post("/settings/api-key")

    assert rotated.status_code == 200
    new = rotated.json()["api_key"]
    with client(stack, new) as fresh, client(stack, old) as stale:
        assert fresh.get("/v1/orders").status_code == 200
        assert stale.get("/v1/orders").status_code == 401
        assert stale.post("/v1/orders", json={"amount": 1}).status_code == 401


def test_rotation_to_given_key(stack: RunningStack) -> None:
    """A key given in the body becomes the key in force."""
    wanted = "vk_given_key_0123456789"

    response = stack.ventra.post("/settings/api-key", json={"api_key": wanted})

    assert response.json()["api_key"] == wanted
    with client(stack, wanted) as fresh:
        assert fresh.get("/v1/orders").status_code == 200


def test_key_file_private(stack: RunningStack) -> None:
    """The rotated key is stored in .runtime/api_key.json with mode 0600."""
    new = stack.ventra.post("/settings/api-key").json()["api_key"]

    path = stack.data_dir / ".runtime" / "api_key.json"

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new in path.read_text(encoding="utf-8")


def test_delete_file_restores(stack: RunningStack) -> None:
    """Deleting the key file returns to the configured key."""
    new = stack.ventra.post("/settings/api-key").json()["api_key"]
    path = stack.data_dir / ".runtime" / "api_key.json"

    path.unlink()

    with client(stack, stack.info.api_key) as configured, client(stack, new) as rotated:
        assert configured.get("/v1/orders").status_code == 200
        assert rotated.get("/v1/orders").status_code == 401


def test_rotation_needs_key(stack: RunningStack) -> None:
    """Rotating without the current key is a 401 and changes nothing."""
    with client(stack, "not-the-key") as stranger:
        response = stranger.post("/settings/api-key")

    assert response.status_code == 401
    assert not (stack.data_dir / ".runtime" / "api_key.json").exists()


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("dev-secret", True),
        ("dev-secreT", False),
        ("", False),
        ("dev-secret ", False),
        ("dév-secret", False),
        (None, False),
    ],
)
def test_matches(tmp_path, candidate: str | None, expected: bool) -> None:  # type: ignore[no-untyped-def]
    """The comparison is exact, including case, spaces and non-ASCII text."""
    store = ApiKeyStore("dev-secret", tmp_path)

    assert store.matches(candidate) is expected


@pytest.mark.parametrize("content", ['{"api_key": "abc"', '{"api_key": null}', "[]"])
def test_damaged_key_file_fails_closed(stack: RunningStack, content: str) -> None:
    """A damaged key file rejects every key, the configured one included."""
    path = stack.data_dir / ".runtime" / "api_key.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)

    configured = stack.ventra.get("/v1/orders", headers={"x-api-key": "dev-secret"})
    literal_none = stack.ventra.get("/v1/orders", headers={"x-api-key": "None"})
    path.unlink()
    restored = stack.ventra.get("/v1/orders", headers={"x-api-key": "dev-secret"})

    assert configured.status_code == 401
    assert literal_none.status_code == 401
    assert restored.status_code == 200
