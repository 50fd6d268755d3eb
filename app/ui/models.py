"""Qt table models of events, attempts, orders and ledger rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

Index = QModelIndex | QPersistentModelIndex
Column = tuple[str, Callable[[dict[str, Any]], Any]]

SIG_OK = "SIG OK"
SIG_FAIL = "SIG FAIL"
# A signed copy of the event arrived, but its latest attempt failed to
# verify, as an unsigned request that reuses a real event id does.
SIG_LAST_FAIL = "SIG OK · LAST FAIL"
SIG_COLORS = {SIG_OK: "#1a7f37", SIG_LAST_FAIL: "#9a6700", SIG_FAIL: "#cf222e"}


def money(centavos: int | None) -> str:
    """Format centavos as reais, e.g. 58242 → ``R$ 582,42``."""
    if centavos is None:
        return ""
    sign = "-" if centavos < 0 else ""
    value = abs(centavos)
    return f"{sign}R$ {value // 100:,}".replace(",", ".") + f",{value % 100:02d}"


def signature_badge(row: dict[str, Any]) -> str:
    """Return the signature badge of an event or of one attempt.

    An event row carries ``payload_verified`` (some attempt verified) and
    ``signature_valid`` (its latest attempt verified). An attempt row has
    only ``signature_valid``.
    """
    valid = bool(row.get("signature_valid"))
    if not row.get("payload_verified", valid):
        return SIG_FAIL
    return SIG_OK if valid else SIG_LAST_FAIL


def retry_badge(row: dict[str, Any]) -> str:
    retries = int(row.get("attempt_count", 1)) - 1
    return f"RETRY {retries}" if retries > 0 else ""


def delta_badge(row: dict[str, Any]) -> str:
    delta = row.get("delta_seconds") or 0
    return f"Δ +{delta:.1f}s" if delta else ""


class RowsModel(QAbstractTableModel):
    """A read-only table of JSON rows with declared columns."""

    columns: list[Column] = []
    key = "id"

    def __init__(self, parent: QObject | None = None) -> None:
        # A parent ties the model's C++ lifetime to its widget, so the view
        # never outlives its model when Python drops its last reference.
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section][0]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.columns[index.column()][1](row)
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self.color(row, index.column())
        return None

    def color(self, row: dict[str, Any], column: int) -> QColor | None:
        return None

    def replace(self, rows: list[dict[str, Any]]) -> None:
        """Swap in new rows, keeping the view's selection model valid."""
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def row_at(self, position: int) -> dict[str, Any] | None:
        return self.rows[position] if 0 <= position < len(self.rows) else None


class EventsModel(RowsModel):
    """The events timeline, newest first, with badges."""

    key = "event_id"
    columns = [
        ("Type", lambda r: r.get("type")),
        ("Order", lambda r: r.get("order_id")),
        ("Env", lambda r: r.get("env")),
        ("Signature", signature_badge),
        ("Attempts", lambda r: r.get("attempt_count")),
        ("Retries", retry_badge),
        ("Δ", delta_badge),
        ("Last received", lambda r: (r.get("last_received_at") or "")[11:23]),
    ]

    def color(self, row: dict[str, Any], column: int) -> QColor | None:
        if column == 3:
            return QColor(SIG_COLORS[signature_badge(row)])
        return None


class AttemptsModel(RowsModel):
    """The attempt timeline of one event, as VentraSim recorded it."""

    columns = [
        ("#", lambda r: r.get("delivery_attempt") or "?"),
        ("Received", lambda r: (r.get("received_at") or "")[11:23]),
        ("Status", lambda r: r.get("status_code") or r.get("outcome")),
        ("Signature", signature_badge),
        ("Mode", lambda r: r.get("mode")),
        ("Held ms", lambda r: r.get("held_ms")),
        ("Δ", lambda r: f"+{r['delta']:.1f}s" if r.get("delta") else ""),
    ]


class OrdersModel(RowsModel):
    """The merchant's orders, as received events describe them."""

    key = "order_id"
    columns = [
        ("Order", lambda r: r.get("order_id")),
        ("Env", lambda r: r.get("env")),
        ("Status", lambda r: r.get("status")),
        ("Amount", lambda r: money(r.get("amount"))),
        ("Held", lambda r: money(r.get("held_amount"))),
        ("Released", lambda r: money(r.get("released_amount"))),
        ("Refunded", lambda r: money(r.get("refunded_amount"))),
        ("Last event", lambda r: r.get("last_event_type")),
    ]


class AccountsModel(RowsModel):
    """Ledger accounts with their balances."""

    key = "code"
    columns = [
        ("Account", lambda r: r.get("name")),
        ("Debits", lambda r: money(r.get("debits"))),
        ("Credits", lambda r: money(r.get("credits"))),
        ("Balance", lambda r: money(r.get("balance"))),
    ]


class LedgerTransactionsModel(RowsModel):
    """Ledger transactions, one row per entry."""

    columns = [
        ("Transaction", lambda r: r.get("transaction_id")),
        ("Kind", lambda r: r.get("kind")),
        ("Order", lambda r: r.get("order_id")),
        ("Account", lambda r: r.get("account")),
        ("Debit", lambda r: money(r["amount"]) if r.get("direction") == "debit" else ""),
        ("Credit", lambda r: money(r["amount"]) if r.get("direction") == "credit" else ""),
    ]
