"""Endpoint URLs: which ones an attempt could reach, and the setting's error."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import ConfigError, is_http_url, load_settings

ACCEPTED = [
    "http://localhost:8000/x",
    "http://127.0.0.1:9/x",
    "http://[::1]:8000/x",
    "https://my-host.example/x",
    "http://host_name:80/",
    "http://host.example./",
    "http://" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]) + "./",
]
REJECTED = [
    "ftp://host.example/",
    "http:///x",
    "http://127.0.0.1:0/x",
    "http://127.0.0.1:65536/x",
    "http://%ff%00/x",
    "http://a..b/",
    "http://-host.example/",
    "http://" + "a" * 64 + ".example/",
    "http://" + ".".join(["a" * 63] * 4) + "/",
    "http://a b/",
    "http://[::1/",
    "http://[::1]]/",
    "http://[127.0.0.1]/",
    "http://[v1.fe]/",
    "http://host\\@127.0.0.1:8000/ok",
    "http://user:password@host.example/",
    "http://@host.example/",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_url_accepted(url: str) -> None:
    assert is_http_url(url)


@pytest.mark.parametrize("url", REJECTED)
def test_url_rejected(url: str) -> None:
    assert not is_http_url(url)


@pytest.mark.parametrize("url", ["http://[::1/", "http://user:pw@host.example/"])
def test_webhook_url_setting_rejected(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unusable WEBHOOK_URL is a configuration error that names the rule."""
    monkeypatch.setenv("WEBHOOK_URL", url)

    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path)

    assert "no user name or password" in str(raised.value)
