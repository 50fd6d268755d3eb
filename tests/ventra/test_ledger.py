"""The double-entry ledger: invariants under random operations, append-only rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.core.config import Settings
from app.ledger_cli import verify_ledger
from app.ventra import ledger
from app.ventra.api import VentraContext
from app.ventra.errors import StateConflict
from tests.conftest import Databases, RunningStack

# One step of a random sequence: an action and, for refunds, an amount
# (None refunds everything held).
Step = tuple[str, int | None]
STEPS = st.one_of(
    st.tuples(st.sampled_from(["pay", "release", "expire"]), st.none()),
    st.tuples(st.just("refund"), st.none() | st.integers(1, 60_000)),
)


@dataclass
class Expected:
    """What the order should look like after the steps so far."""

    amount: int
    status: str = "pending_payment"
    held: int = 0
    released: int = 0
    refunded: int = 0

    def apply(self, action: str, refund: int | None) -> bool:
        """Apply a step and return False when Ventra must reject it with 409."""
        if action == "pay" and self.status == "pending_payment":
            self.status, self.held = "held", self.amount
            return True
        if action == "release" and self.status == "held":
            self.status, self.released, self.held = "released", self.held, 0
            return True
        if action == "refund" and self.status == "held":
            amount = self.held if refund is None else refund
            if amount > self.held:
                return False
            self.held -= amount
            self.refunded += amount
            if self.held == 0:
                self.status = "refunded"
            return True
        if action == "expire":
            if self.status == "pending_payment":
                self.status = "expired"
            return True
        return False


async def run_sequence(
    context: VentraContext, amount: int, steps: list[Step]
) -> list[str]:
    """Run the steps through the order service and return what went wrong.

    It runs on the server's own loop without HTTP, so a thousand sequences
    take well under a minute. The HTTP layer has tests of its own.
    """
    orders = context.orders
    order_id = (
        await orders.create(
            amount=amount, description=None, env="local", expires_in=3600
        )
    )["id"]
    expected = Expected(amount)
    problems: list[str] = []
    for action, refund in steps:
        allowed = expected.apply(action, refund)
        try:
            order = await _apply(context, order_id, action, refund)
        except StateConflict as exc:
            if allowed:
                problems.append(f"{action} {refund} rejected: {exc.message}")
            order = await orders.get(order_id)
        else:
            if not allowed:
                problems.append(f"{action} {refund} accepted from {order['status']}")
        actual = (
            order["status"],
            order["held_amount"],
            order["released_amount"],
            order["refunded_amount"],
        )
        wanted = (expected.status, expected.held, expected.released, expected.refunded)
        if actual != wanted:
            problems.append(f"after {action} {refund}: order {actual}, model {wanted}")
        async with context.sessions() as session:
            problems += (await ledger.verify(session))["violations"]
        if problems:
            break
    return problems


async def _apply(
    context: VentraContext, order_id: str, action: str, refund: int | None
) -> dict[str, Any]:
    orders = context.orders
    if action == "expire":
        # Time passes: the unpaid charge's expiry moves into the past, and
        # reading the order applies it.
        async with context.sessions() as session:
            await session.execute(
                text(
                    "UPDATE charges SET expires_at = now() - interval '1 second'"
                    " WHERE order_id = :id AND paid_at IS NULL"
                ),
                {"id": order_id},
            )
            await session.commit()
        return await orders.get(order_id)
    if action == "refund":
        return await orders.refund(order_id, refund, None)
    if action == "pay":
        return await orders.pay(order_id)
    return await orders.release(order_id)


@pytest.fixture(scope="module")
def quiet_stack(shared_stack: RunningStack) -> RunningStack:
    """The shared stack with webhooks off, so deliveries do not compete for CPU."""
    response = shared_stack.ventra.put(
        "/v1/webhook-endpoints/local", json={"enabled": False}
    )
    assert response.status_code == 200, response.text
    return shared_stack


# About 40 s alone on two cores; the margin covers a loaded CI machine.
@pytest.mark.timeout(300)
@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(amount=st.integers(1, 50_000), steps=st.lists(STEPS, min_size=1, max_size=4))
def test_random_sequences(
    quiet_stack: RunningStack, amount: int, steps: list[Step]
) -> None:
    """After every step the order matches the model and the ledger verifies."""
    server = quiet_stack.background.stack.ventra
    assert server is not None and server.context is not None

    problems = quiet_stack.background.call(run_sequence(server.context, amount, steps))

    assert problems == []


def test_random_sequences_ran(quiet_stack: RunningStack) -> None:
    """The property test left at least 1,000 orders behind, all verified."""
    with quiet_stack.databases.ventra_conn() as conn:
        count = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    verify = quiet_stack.ventra.get("/v1/ledger/verify").json()

    assert count >= 1000
    assert verify["ok"] is True


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE ledger_transactions SET kind = 'other'",
        "DELETE FROM ledger_transactions",
    ],
    ids=["update_entry", "delete_entry", "truncate_entries", "update_tx", "delete_tx"],
)
def test_append_only(stack: RunningStack, statement: str) -> None:
    """Changing or removing ledger rows fails at the database."""
    stack.paid_order(1000)

    with stack.databases.ventra_conn() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(statement)
        count = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]

    assert count == 2


def test_unbalanced_rejected(stack: RunningStack) -> None:
    """A transaction whose debits and credits differ fails at commit."""
    with (
        stack.databases.ventra_conn() as conn,
        pytest.raises(psycopg.errors.CheckViolation, match="does not balance"),
        conn.transaction(),
    ):
        conn.execute(
            "INSERT INTO ledger_transactions (id, kind, created_at)"
            " VALUES ('ltx_bad', 'manual', now())"
        )
        conn.execute(
            "INSERT INTO ledger_entries"
            " (transaction_id, account_code, direction, amount) VALUES"
            " ('ltx_bad', 'pix_settlement', 'debit', 100),"
            " ('ltx_bad', 'escrow_custody', 'credit', 99)"
        )


def test_accounts(stack: RunningStack) -> None:
    """Balances follow a payment, a partial refund and a release."""
    order = stack.paid_order(1000)
    stack.ventra.post(f"/v1/orders/{order['id']}/refund", json={"amount": 300})
    stack.ventra.post(f"/v1/orders/{order['id']}/release")

    found = stack.ventra.get("/v1/ledger/accounts").json()["data"]

    balances = {a["code"]: a["balance"] for a in found}
    assert balances == {
        "pix_settlement": 1000,
        "escrow_custody": 0,
        "merchant_payable": 700,
        "buyer_refunds": 300,
    }


def test_transactions_of_order(stack: RunningStack) -> None:
    """Each money movement of an order is one balanced transaction."""
    order = stack.paid_order(1000)
    stack.ventra.post(f"/v1/orders/{order['id']}/refund", json={"amount": 300})
    stack.ventra.post(f"/v1/orders/{order['id']}/refund")
    stack.paid_order(5)

    found = stack.ventra.get(
        "/v1/ledger/transactions", params={"order_id": order["id"]}
    ).json()["data"]

    assert sorted(t["kind"] for t in found) == [
        "partial_refund",
        "payment_held",
        "refund",
    ]
    for transaction in found:
        debits = sum(
            e["amount"] for e in transaction["entries"] if e["direction"] == "debit"
        )
        credits = sum(
            e["amount"] for e in transaction["entries"] if e["direction"] == "credit"
        )
        assert debits == credits


def break_ledger(databases: Databases) -> None:
    """Make an order claim money that the ledger never received."""
    with databases.ventra_conn() as conn:
        conn.execute(
            "UPDATE orders SET status = 'held', held_amount = amount"
            " WHERE status = 'pending_payment'"
        )


def test_verify_finds_violation(stack: RunningStack) -> None:
    """GET /v1/ledger/verify reports an order the ledger does not back."""
    order = stack.create_order(1000)
    break_ledger(stack.databases)

    result = stack.ventra.get("/v1/ledger/verify").json()

    assert result["ok"] is False
    assert any(order["id"] in v for v in result["violations"])
    assert any("custody" in v for v in result["violations"])


def cli_settings(databases: Databases, tmp_path: Path) -> Settings:
    prefix = databases.ventra.database.removesuffix("_ventra")
    url = databases.server.set(database=prefix, drivername="postgresql")
    return Settings(
        data_dir=tmp_path, database_url=url.render_as_string(hide_password=False)
    )


def test_cli_verify(stack: RunningStack, tmp_path: Path) -> None:
    """`ventra ledger verify` exits 0 on a sound ledger and 1 on a violation."""
    stack.paid_order(1000)
    settings_ = cli_settings(stack.databases, tmp_path)

    sound = asyncio.run(verify_ledger(settings_))
    stack.create_order(500)
    break_ledger(stack.databases)
    broken = asyncio.run(verify_ledger(settings_))

    assert sound == 0
    assert broken == 1


def test_cli_verify_process(stack: RunningStack, tmp_path: Path) -> None:
    """The console command prints the result as JSON and exits with its code."""
    stack.paid_order(1000)
    url = cli_settings(stack.databases, tmp_path).database_url
    assert url is not None

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "ledger",
            "verify",
            "--database-url",
            url,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DATABASE_URL": ""},
    )

    assert result.returncode == 0, result.stderr
    assert '"ok": true' in result.stdout
