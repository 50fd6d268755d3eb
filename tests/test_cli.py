"""The command line: serve's ready line and clean stop, selftest, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.cli import build_parser

SERVE = [sys.executable, "-m", "app", "serve", "--ventra-port", "0", "--sim-port", "0"]
WARNING_MARKERS = (
    "Unclosed",
    "Task was destroyed",
    "was never awaited",
    "Traceback",
    "Exception ignored",
)


def start_serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], dict]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen(
        [*SERVE, "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError(f"serve printed no ready line: {process.stderr.read()}")
    return process, json.loads(line)


def stop_serve(process: subprocess.Popen[str]) -> tuple[float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return time.monotonic() - started, stderr


def test_serve_ready_line_and_sigterm(tmp_path: Path) -> None:
    """serve prints one JSON line and stops cleanly on SIGTERM within 10 s."""
    process, ready = start_serve(tmp_path / "data")
    health = httpx.get(ready["ventra_url"] + "/health")
    sim_health = httpx.get(ready["sim_url"] + "/api/health")

    elapsed, stderr = stop_serve(process)

    assert set(ready) == {"ventra_url", "sim_url", "database"}
    assert "embedded PostgreSQL" in ready["database"]
    assert health.status_code == 200
    assert sim_health.status_code == 200
    assert process.returncode == 0
    assert elapsed < 10
    assert not [m for m in WARNING_MARKERS if m in stderr], stderr
    pgdata = tmp_path / "data" / "pgdata"
    assert not (pgdata / "postmaster.pid").exists()


def test_data_survives_restart(tmp_path: Path) -> None:
    """An order created before a restart is still there after it."""
    data_dir = tmp_path / "data"
    process, ready = start_serve(data_dir)
    headers = {"x-api-key": "dev-secret"}
    created = httpx.post(
        ready["ventra_url"] + "/v1/orders", json={"amount": 115}, headers=headers
    ).json()
    stop_serve(process)

    process, ready = start_serve(data_dir)
    try:
        found = httpx.get(ready["ventra_url"] + f"/v1/orders/{created['id']}", headers=headers)
    finally:
        stop_serve(process)

    assert found.status_code == 200
    assert found.json()["amount"] == 115


@pytest.mark.parametrize(
    "argv",
    [
        ["--ventra-port", "1234", "serve", "--only", "ventra"],
        ["serve", "--ventra-port", "1234", "--only", "ventra"],
    ],
    ids=["before_command", "after_command"],
)
def test_server_option_either_side(argv: list[str]) -> None:
    """A server option applies whether it comes before or after ``serve``."""
    args = build_parser().parse_args(argv)

    assert args.command == "serve"
    assert args.ventra_port == 1234


def test_serve_rejects_bad_port(tmp_path: Path) -> None:
    """An invalid port is a usage error naming the value, not a traceback."""
    result = subprocess.run(
        [*SERVE[:4], "--ventra-port", "70000", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "70000" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "expected_code", "expected_text"),
    [
        ([], 0, "selftest passed"),
        (["--sim-secret", "not-the-real-secret"], 1, "FAIL verify signatures"),
    ],
)
def test_selftest(tmp_path: Path, extra: list[str], expected_code: int, expected_text: str) -> None:
    """selftest passes, and names the failed step when the secret is wrong."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "selftest", "--timeout", "20", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == expected_code, result.stdout + result.stderr
    assert expected_text in result.stdout + result.stderr
