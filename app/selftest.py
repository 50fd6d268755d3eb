"""``ventra selftest``: the end-to-end flow once, in a temporary data directory."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from sqlalchemy.engine import URL

from app.core.config import Settings
from app.core.database import drop_database, parse_database_url, side_urls
from app.stack import Stack, StackInfo

EXPECTED_TYPES = ("charge.created", "charge.paid", "escrow.held")


class StepFailed(Exception):
    """A self-test step that did not work, with its name."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def report(step: str, detail: str = "") -> None:
    print(f"ok   {step}{' · ' + detail if detail else ''}", flush=True)


async def _call(
    http: aiohttp.ClientSession, step: str, method: str, url: str, **kwargs: Any
) -> Any:
    try:
        async with http.request(method, url, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise StepFailed(step, f"HTTP {response.status}: {body}")
            return body
    except aiohttp.ClientError as exc:
        raise StepFailed(step, f"{url} unreachable: {exc}") from None


async def _wait_for_events(
    http: aiohttp.ClientSession, info: StackInfo, order_id: str, timeout: float
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {info.sim_token}"}
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = await _call(
            http, "receive events", "GET", f"{info.sim_url}/api/events",
            params={"order_id": order_id}, headers=headers,
        )
        events = found["data"]
        # A rejected signature keeps the order's later events queued, so
        # the first SIG FAIL ends the wait.
        if any(not e["signature_valid"] for e in events):
            return events
        if {e["type"] for e in events} >= set(EXPECTED_TYPES):
            return events
        await asyncio.sleep(0.2)
    got = sorted(e["type"] for e in events) or "none"
    raise StepFailed("receive events", f"timed out after {timeout:g} s; VentraSim stored only {got}")


async def _flow(stack: Stack, sim_secret: str | None, timeout: float) -> None:
    try:
        info = await stack.start()
    except Exception as exc:  # noqa: BLE001 - reported as the failed step
        raise StepFailed("start servers", f"{type(exc).__name__}: {exc}") from None
    report("start servers", f"ventra {info.ventra_url}, ventrasim {info.sim_url}")
    ventra = {"x-api-key": info.api_key}
    async with aiohttp.ClientSession(trust_env=False) as http:
        if sim_secret is not None:
            await _call(
                http, "set secret", "PUT", f"{info.sim_url}/api/endpoints/local",
                json={"secret": sim_secret},
                headers={"Authorization": f"Bearer {info.sim_token}"},
            )
            report("set secret", "VentraSim now holds the given secret for local")
        order = await _call(
            http, "create order", "POST", f"{info.ventra_url}/v1/orders",
            json={"amount": 1999, "description": "Selftest – Açaí"}, headers=ventra,
        )
        report("create order", f"{order['id']} {order['status']}")
        paid = await _call(
            http, "pay order", "POST", f"{info.ventra_url}/v1/orders/{order['id']}/pay",
            headers=ventra,
        )
        if paid["status"] != "held":
            raise StepFailed("pay order", f"status is {paid['status']}, expected held")
        report("pay order", f"endToEndId {paid['charge']['end_to_end_id']}")
        events = await _wait_for_events(http, info, order["id"], timeout)
        invalid = [e["type"] for e in events if not e["signature_valid"]]
        if invalid:
            raise StepFailed(
                "verify signatures",
                f"SIG FAIL on {', '.join(sorted(invalid))}: VentraSim's secret"
                " differs from Ventra's",
            )
        report("receive events", ", ".join(sorted(e["type"] for e in events)))
        report("verify signatures", "SIG OK on every event")
        verdict = await _call(
            http, "verify ledger", "GET", f"{info.ventra_url}/v1/ledger/verify", headers=ventra
        )
        if not verdict["ok"]:
            raise StepFailed("verify ledger", "; ".join(verdict["violations"]))
        report("verify ledger", "balanced")


def run_selftest(args: argparse.Namespace) -> int:
    """Run the flow and return the exit code: 0 only if every step worked."""
    data_dir = Path(tempfile.mkdtemp(prefix="ventra-selftest-"))
    settings = Settings(
        data_dir=data_dir,
        ventra_port=0,
        sim_port=0,
        database_url=args.database_url,
    )
    scratch: URL | None = None
    if args.database_url:
        # Databases of their own keep the run apart from real data: the
        # URL's name plus a random suffix, dropped at the end.
        url = parse_database_url(args.database_url)
        base = (url.database or "ventra")[:30]
        scratch = url.set(database=f"{base}_selftest_{secrets.token_hex(4)}")
        settings = settings.with_changes(
            database_url=scratch.render_as_string(hide_password=False)
        )
    stack = Stack(settings)

    async def main() -> None:
        try:
            await _flow(stack, args.sim_secret, args.timeout)
        finally:
            await stack.stop()
            if scratch is not None:
                for side_url in side_urls(scratch, embedded=False):
                    await asyncio.to_thread(drop_database, side_url)

    try:
        asyncio.run(main())
    except StepFailed as exc:
        print(f"FAIL {exc.step}: {exc.reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print("selftest passed", flush=True)
    return 0
