"""Escrow orders: every state change, its ledger postings and its events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ventra import events, ledger, pix
from app.ventra.errors import NotFound, StateConflict, ValidationFailed
from app.ventra.ids import new_id
from app.ventra.models import Charge, Order

log = logging.getLogger("ventra.orders")

MERCHANT_NAME = "Ventra Sandbox Merchant"
MERCHANT_CITY = "Sao Paulo"


@dataclass(frozen=True)
class OrderPolicy:
    """Settings of the order service that come from configuration."""

    retry_schedule: str = "fast"
    merchant_name: str = MERCHANT_NAME
    merchant_city: str = MERCHANT_CITY


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrderService:
    """Apply order transitions in one database transaction each.

    The order row is locked with ``SELECT … FOR UPDATE`` before its status is
    read, so of concurrent conflicting requests exactly one reads the status
    it needs and the others get 409 naming the status it left behind.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: OrderPolicy,
        on_events: Callable[[], None] = lambda: None,
        before_commit: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._on_events = on_events
        # Test hook: awaited after a change is flushed and before its commit.
        self._before_commit = before_commit

    async def _commit(self, session: AsyncSession, step: str) -> None:
        await session.flush()
        if self._before_commit is not None:
            await self._before_commit(step)
        await session.commit()
        self._on_events()

    async def _emit(
        self,
        session: AsyncSession,
        order: Order,
        charge: Charge | None,
        event_type: str,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> None:
        await events.emit(
            session,
            order=order,
            charge=charge,
            event_type=event_type,
            now=now,
            schedule=self._policy.retry_schedule,
            extra=extra,
        )

    async def create(
        self, *, amount: int, description: str | None, env: str, expires_in: int
    ) -> dict[str, Any]:
        """Create an order in ``pending_payment`` with its Pix charge."""
        now = utcnow()
        order = Order(
            id=new_id("ord"),
            env=env,
            amount=amount,
            description=description,
            status="pending_payment",
            held_amount=0,
            released_amount=0,
            refunded_amount=0,
            last_sequence=0,
            created_at=now,
            updated_at=now,
        )
        txid = pix.new_txid()
        charge = Charge(
            txid=txid,
            order_id=order.id,
            br_code=pix.build_br_code(
                txid=txid,
                amount=amount,
                merchant_name=self._policy.merchant_name,
                merchant_city=self._policy.merchant_city,
            ),
            expires_at=now + timedelta(seconds=expires_in),
            paid_at=None,
            end_to_end_id=None,
        )
        async with self._sessions() as session:
            # Flushed one by one: the charge and the event refer to the order.
            session.add(order)
            await session.flush()
            session.add(charge)
            await session.flush()
            await self._emit(session, order, charge, "charge.created", now)
            await self._commit(session, "create")
        log.info("order created order_id=%s env=%s amount=%d", order.id, env, amount)
        return events.order_snapshot(order, charge)

    async def _locked(
        self, session: AsyncSession, order_id: str
    ) -> tuple[Order, Charge]:
        order = await session.scalar(
            select(Order).where(Order.id == order_id).with_for_update()
        )
        if order is None:
            raise NotFound(f"order {order_id!r} not found", order_id=order_id)
        charge = await session.scalar(select(Charge).where(Charge.order_id == order_id))
        assert charge is not None, f"order {order_id} has no charge"
        return order, charge

    async def _expire_locked(
        self, session: AsyncSession, order: Order, charge: Charge, now: datetime
    ) -> None:
        order.status = "expired"
        order.updated_at = now
        await self._emit(session, order, charge, "charge.expired", now)
        log.info("charge expired order_id=%s txid=%s", order.id, charge.txid)

    async def get(self, order_id: str) -> dict[str, Any]:
        """Return an order, expiring it first if its charge is past due."""
        async with self._sessions() as session:
            order, charge = await self._locked(session, order_id)
            now = utcnow()
            if order.status == "pending_payment" and charge.expires_at <= now:
                await self._expire_locked(session, order, charge, now)
                await self._commit(session, "expire")
            return events.order_snapshot(order, charge)

    async def list(
        self, *, env: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Return orders, newest first."""
        query = select(Order, Charge).join(Charge, Charge.order_id == Order.id)
        if env:
            query = query.where(Order.env == env)
        if status:
            query = query.where(Order.status == status)
        query = query.order_by(Order.created_at.desc(), Order.id).limit(limit)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [events.order_snapshot(order, charge) for order, charge in rows]

    async def pay(self, order_id: str) -> dict[str, Any]:
        """Simulate the Pix payment: the money is received and held."""
        async with self._sessions() as session:
            order, charge = await self._locked(session, order_id)
            return await self._pay_locked(session, order, charge)

    async def pay_by_txid(self, txid: str, amount: str | None) -> dict[str, Any]:
        """Pay the charge that a pasted BR Code names."""
        async with self._sessions() as session:
            charge = await session.scalar(select(Charge).where(Charge.txid == txid))
            if charge is None:
                raise NotFound(
                    f"no charge has txid {txid!r}; the BR Code is not one of Ventra's",
                    txid=txid,
                )
            order, charge = await self._locked(session, charge.order_id)
            if amount is not None and amount != pix.format_amount(order.amount):
                raise ValidationFailed(
                    f"the BR Code's amount {amount} differs from the charge's"
                    f" {pix.format_amount(order.amount)}",
                    field="br_code",
                )
            return await self._pay_locked(session, order, charge)

    async def _pay_locked(
        self, session: AsyncSession, order: Order, charge: Charge
    ) -> dict[str, Any]:
        now = utcnow()
        if order.status == "pending_payment" and charge.expires_at <= now:
            await self._expire_locked(session, order, charge, now)
            await self._commit(session, "expire")
            raise StateConflict(
                f"order {order.id} cannot be paid: its charge expired at"
                f" {events.rfc3339(charge.expires_at)} (status is now expired)",
                code="charge_expired",
                order_id=order.id,
                status=order.status,
            )
        self._require(order, "pending_payment", "paid")

        charge.paid_at = now
        charge.end_to_end_id = pix.new_end_to_end_id(now)
        order.status = "held"
        order.held_amount = order.amount
        order.updated_at = now
        await ledger.post(
            session,
            kind="payment_held",
            order_id=order.id,
            postings=ledger.transfer(
                ledger.PIX_SETTLEMENT, ledger.ESCROW_CUSTODY, order.amount
            ),
            now=now,
        )
        await self._emit(session, order, charge, "charge.paid", now)
        await self._emit(session, order, charge, "escrow.held", now)
        await self._commit(session, "pay")
        log.info(
            "order paid order_id=%s end_to_end_id=%s amount=%d",
            order.id,
            charge.end_to_end_id,
            order.amount,
        )
        return events.order_snapshot(order, charge)

    @staticmethod
    def _require(order: Order, status: str, action: str) -> None:
        if order.status != status:
            raise StateConflict(
                f"order {order.id} cannot be {action}: its status is {order.status},"
                f" and only an order in {status} can be",
                order_id=order.id,
                status=order.status,
            )

    async def release(self, order_id: str) -> dict[str, Any]:
        """Release everything still held to the merchant."""
        async with self._sessions() as session:
            order, charge = await self._locked(session, order_id)
            self._require(order, "held", "released")
            now = utcnow()
            amount = order.held_amount
            order.released_amount += amount
            order.held_amount = 0
            order.status = "released"
            order.updated_at = now
            await ledger.post(
                session,
                kind="release",
                order_id=order.id,
                postings=ledger.transfer(
                    ledger.ESCROW_CUSTODY, ledger.MERCHANT_PAYABLE, amount
                ),
                now=now,
            )
            await self._emit(
                session, order, charge, "escrow.released", now, {"released": amount}
            )
            await self._commit(session, "release")
        log.info("order released order_id=%s amount=%d", order_id, amount)
        return events.order_snapshot(order, charge)

    async def refund(
        self, order_id: str, amount: int | None, reason: str | None
    ) -> dict[str, Any]:
        """Refund the buyer, fully or in part; a full refund ends the order."""
        async with self._sessions() as session:
            order, charge = await self._locked(session, order_id)
            self._require(order, "held", "refunded")
            refund = order.held_amount if amount is None else amount
            if refund > order.held_amount:
                raise StateConflict(
                    f"order {order.id} (status {order.status}) holds"
                    f" {order.held_amount} centavos, so {refund} cannot be refunded;"
                    f" refund at most {order.held_amount}",
                    code="refund_exceeds_held",
                    order_id=order.id,
                    status=order.status,
                    held_amount=order.held_amount,
                )
            now = utcnow()
            order.held_amount -= refund
            order.refunded_amount += refund
            if order.held_amount == 0:
                order.status = "refunded"
            order.updated_at = now
            await ledger.post(
                session,
                kind="refund" if order.held_amount == 0 else "partial_refund",
                order_id=order.id,
                postings=ledger.transfer(
                    ledger.ESCROW_CUSTODY, ledger.BUYER_REFUNDS, refund
                ),
                now=now,
            )
            await self._emit(
                session,
                order,
                charge,
                "escrow.refunded",
                now,
                {
                    "refund": {
                        "amount": refund,
                        "reason": reason,
                        "partial": order.held_amount > 0,
                    }
                },
            )
            await self._commit(session, "refund")
        log.info("order refunded order_id=%s amount=%d", order_id, refund)
        return events.order_snapshot(order, charge)

    async def expire_due(self, limit: int = 100) -> int:
        """Expire unpaid charges whose ``expires_at`` has passed."""
        now = utcnow()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(Order.id)
                    .join(Charge, Charge.order_id == Order.id)
                    .where(Order.status == "pending_payment", Charge.expires_at <= now)
                    .limit(limit)
                    .with_for_update(of=Order, skip_locked=True)
                )
            ).all()
            for order_id in due:
                order, charge = await self._locked(session, order_id)
                await self._expire_locked(session, order, charge, now)
            if due:
                await self._commit(session, "expire")
        return len(due)
