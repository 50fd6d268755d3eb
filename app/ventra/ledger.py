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
        LedgerTransaction(
            id=transaction_id, order_id=order_id, kind=kind, created_at=now
        )
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
        transaction_id,
        kind,
        order_id,
        debits,
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


# Orders whose amounts differ from the net of their own ledger entries on
# the custody, merchant payable and buyer refunds accounts.
ORDER_TOTALS_SQL = text(
    """
    SELECT o.id, o.held_amount, o.released_amount, o.refunded_amount,
           coalesce(t.custody, 0) AS custody,
           coalesce(t.payable, 0) AS payable,
           coalesce(t.refunds, 0) AS refunds
      FROM orders o
      LEFT JOIN (
        SELECT lt.order_id,
               sum(CASE WHEN e.account_code = 'escrow_custody' THEN
                   CASE e.direction WHEN 'credit' THEN e.amount ELSE -e.amount END
                   END) AS custody,
               sum(CASE WHEN e.account_code = 'merchant_payable' THEN
                   CASE e.direction WHEN 'credit' THEN e.amount ELSE -e.amount END
                   END) AS payable,
               sum(CASE WHEN e.account_code = 'buyer_refunds' THEN
                   CASE e.direction WHEN 'credit' THEN e.amount ELSE -e.amount END
                   END) AS refunds
          FROM ledger_transactions lt
          JOIN ledger_entries e ON e.transaction_id = lt.id
         GROUP BY lt.order_id
      ) t ON t.order_id = o.id
     WHERE o.held_amount <> coalesce(t.custody, 0)
        OR o.released_amount <> coalesce(t.payable, 0)
        OR o.refunded_amount <> coalesce(t.refunds, 0)
     ORDER BY o.id
     LIMIT 100
    """
)


async def verify(session: AsyncSession) -> dict[str, Any]:
    """Check the ledger invariants and return the violations found.

    The checks read one snapshot (REPEATABLE READ), so orders changing
    meanwhile cannot show up as a false mismatch.
    """
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
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
    held = await session.scalar(
        text("SELECT coalesce(sum(held_amount), 0) FROM orders")
    )
    if custody != held:
        violations.append(
            f"escrow custody balance {custody} differs from the held total {held}"
        )

    negative = await session.scalar(
        text("SELECT count(*) FROM orders WHERE held_amount < 0")
    )
    if negative:
        violations.append(f"{negative} orders have a negative held amount")

    for row in await session.execute(ORDER_TOTALS_SQL):
        violations.append(
            f"order {row.id} shows held {row.held_amount}, released"
            f" {row.released_amount}, refunded {row.refunded_amount}, but its"
            f" ledger gives {row.custody}, {row.payable} and {row.refunds}"
        )

    transaction_count = await session.scalar(
        select(func.count()).select_from(LedgerTransaction)
    )
    return {
        "ok": not violations,
        "violations": violations,
        "custody_balance": int(custody or 0),
        "held_total": int(held or 0),
        "transactions": int(transaction_count or 0),
    }
