"""Double-entry ledger: balanced transactions, balances and invariant checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ventra.ids import new_id
from app.ventra.models import LedgerEntry, LedgerTransaction

log = logging.getLogger("ventra.ledger")

PIX_SETTLEMENT = "pix_settlement"
ESCROW_CUSTODY = "escrow_custody"
MERCHANT_PAYABLE = "merchant_payable"
BUYER_REFUNDS = "buyer_refunds"


@dataclass(frozen=True)
class Posting:
    """One side of a ledger transaction, in centavos."""

    account: str
    direction: str
    amount: int


async def post(
    session: AsyncSession,
    *,
    kind: str,
    order_id: str | None,
    postings: list[Posting],
    now: datetime,
) -> str:
    """Write a balanced transaction; the database re-checks it at commit."""
    debits = sum(p.amount for p in postings if p.direction == "debit")
    credits = sum(p.amount for p in postings if p.direction == "credit")
    if debits != credits or len(postings) < 2:
        raise ValueError(f"unbalanced {kind}: debits {debits} credits {credits}")

    transaction_id = new_id("ltx")
    session.add(
        LedgerTransaction(id=transaction_id, order_id=order_id, kind=kind, created_at=now)
    )
    await session.flush()
    session.add_all(
        LedgerEntry(
            transaction_id=transaction_id,
            account_code=p.account,
            direction=p.direction,
            amount=p.amount,
        )
        for p in postings
    )
    await session.flush()
    log.info(
        "ledger transaction posted id=%s kind=%s order_id=%s amount=%d",
        transaction_id, kind, order_id, debits,
    )
    return transaction_id


def transfer(kind_from: str, kind_to: str, amount: int) -> list[Posting]:
    """Build a two-entry transfer: debit ``kind_from``, credit ``kind_to``."""
    return [Posting(kind_from, "debit", amount), Posting(kind_to, "credit", amount)]


async def account_balances(session: AsyncSession) -> list[dict[str, Any]]:
    """Return each account with its debits, credits and normal-side balance."""
    rows = await session.execute(
        text(
            """
            SELECT a.code, a.name, a.normal_side,
                   coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0)
              FROM ledger_accounts a
              LEFT JOIN ledger_entries e ON e.account_code = a.code
             GROUP BY a.code, a.name, a.normal_side
             ORDER BY a.code
            """
        )
    )
    accounts = []
    for code, name, normal_side, debits, credits in rows:
        balance = debits - credits if normal_side == "debit" else credits - debits
        accounts.append(
            {
                "code": code,
                "name": name,
                "normal_side": normal_side,
                "debits": int(debits),
                "credits": int(credits),
                "balance": int(balance),
            }
        )
    return accounts


async def transactions(
    session: AsyncSession, order_id: str | None, limit: int = 200
) -> list[dict[str, Any]]:
    """Return ledger transactions with their entries, newest first."""
    query = select(LedgerTransaction).order_by(
        LedgerTransaction.created_at.desc(), LedgerTransaction.id
    )
    if order_id is not None:
        query = query.where(LedgerTransaction.order_id == order_id)
    found = (await session.scalars(query.limit(limit))).all()
    ids = [t.id for t in found]
    entries: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for entry in await session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.transaction_id.in_(ids))
            .order_by(LedgerEntry.id)
        ):
            entries[entry.transaction_id].append(
                {
                    "account": entry.account_code,
                    "direction": entry.direction,
                    "amount": entry.amount,
                }
            )
    return [
        {
            "id": t.id,
            "order_id": t.order_id,
            "kind": t.kind,
            "created_at": t.created_at.isoformat(),
            "entries": entries[t.id],
        }
        for t in found
    ]


async def verify(session: AsyncSession) -> dict[str, Any]:
    """Check the ledger invariants and return the violations found."""
    violations: list[str] = []

    unbalanced = await session.execute(
        text(
            """
            SELECT t.id,
                   coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0),
                   count(e.id)
              FROM ledger_transactions t
              LEFT JOIN ledger_entries e ON e.transaction_id = t.id
             GROUP BY t.id
            HAVING coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0)
                <> coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0)
                OR count(e.id) < 2
            """
        )
    )
    for tx_id, debits, credits, count in unbalanced:
        violations.append(
            f"transaction {tx_id} does not balance: debits {debits},"
            f" credits {credits}, {count} entries"
        )

    custody = await session.scalar(
        text(
            """
            SELECT coalesce(sum(CASE direction WHEN 'credit' THEN amount
                                               ELSE -amount END), 0)
              FROM ledger_entries WHERE account_code = 'escrow_custody'
            """
        )
    )
    held = await session.scalar(text("SELECT coalesce(sum(held_amount), 0) FROM orders"))
    if custody != held:
        violations.append(
            f"escrow custody balance {custody} differs from the held total {held}"
        )

    negative = await session.scalar(
        text("SELECT count(*) FROM orders WHERE held_amount < 0")
    )
    if negative:
        violations.append(f"{negative} orders have a negative held amount")

    order_count = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    return {
        "ok": not violations,
        "violations": violations,
        "custody_balance": int(custody or 0),
        "held_total": int(held or 0),
        "transactions": int(order_count or 0),
    }
