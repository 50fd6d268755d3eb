"""The Orders, Ledger and Settings tabs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.ui.models import AccountsModel, LedgerTransactionsModel, OrdersModel, money
from app.ui.qr import qr_image

ENVIRONMENTS = ("local", "sandbox", "staging")


def parse_reais(text: str) -> int:
    """Parse an amount typed in reais ("19,99" or "19.99") into centavos."""
    cleaned = text.strip().replace("R$", "").strip()
    if not cleaned:
        raise ValueError("the amount is empty; type it in reais, e.g. 19,99")
    if "," in cleaned:
        cleaned = cleaned.replace(".", "").replace(",", ".")
    units, _, cents = cleaned.partition(".")
    if not units.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)):
        raise ValueError(f"{text!r} is not an amount in reais; type e.g. 19,99")
    centavos = int(units) * 100 + int((cents or "0").ljust(2, "0"))
    if centavos <= 0:
        raise ValueError("the amount must be more than R$ 0,00")
    return centavos


def table(model: Any) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
    view.verticalHeader().hide()
    header = view.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return view


class OrdersPage(QWidget):
    """Orders from the merchant's view, with Ventra's record beside them."""

    order_selected = Signal(str)
    action_requested = Signal(str, str, object)

    def __init__(self) -> None:
        super().__init__()
        self.model = OrdersModel(self)
        self.view = table(self.model)
        self.view.clicked.connect(self._clicked)
        self.order_id: str | None = None

        self.title = QLabel("Select an order, or create one with the toolbar")
        self.qr = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.copy_paste = QLineEdit(readOnly=True)
        self.details = QPlainTextEdit(readOnly=True)
        self.refund_amount = QLineEdit(placeholderText="refund amount (empty: all held)")
        buttons = QHBoxLayout()
        for action in ("pay", "release", "refund"):
            button = QPushButton(action.capitalize())
            button.clicked.connect(lambda _=False, a=action: self._action(a))
            buttons.addWidget(button)
        buttons.addWidget(self.refund_amount)

        detail = QWidget()
        layout = QVBoxLayout(detail)
        layout.addWidget(self.title)
        layout.addWidget(self.qr)
        layout.addWidget(QLabel("Pix copia e cola"))
        layout.addWidget(self.copy_paste)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("Ventra's view: order and ledger"))
        layout.addWidget(self.details, 1)

        splitter = QSplitter()
        splitter.addWidget(self.view)
        splitter.addWidget(detail)
        outer = QVBoxLayout(self)
        outer.addWidget(splitter)

    @Slot()
    def _clicked(self, index: Any) -> None:
        row = self.model.row_at(index.row())
        if row:
            self.select(row["order_id"])

    def select(self, order_id: str) -> None:
        self.order_id = order_id
        self.order_selected.emit(order_id)

    def show_ventra_order(self, order: dict[str, Any], ledger: list[dict[str, Any]]) -> None:
        """Show Ventra's order, its QR code and its ledger transactions."""
        self.order_id = order["id"]
        charge = order.get("charge") or {}
        self.title.setText(
            f"<b>{order['id']}</b> · {order['status']} · {money(order['amount'])}"
        )
        br_code = charge.get("br_code") or ""
        self.copy_paste.setText(br_code)
        if br_code:
            self.qr.setPixmap(QPixmap.fromImage(qr_image(br_code, scale=3)))
        lines = [
            f"held {money(order['held_amount'])}, released {money(order['released_amount'])},"
            f" refunded {money(order['refunded_amount'])}",
            f"txid {charge.get('txid')}, endToEndId {charge.get('end_to_end_id')}",
            "",
        ]
        for tx in ledger:
            lines.append(f"{tx['kind']} {tx['id']}")
            for entry in tx["entries"]:
                lines.append(f"  {entry['direction']:6} {entry['account']:18} {money(entry['amount'])}")
        self.details.setPlainText("\n".join(lines))

    def _action(self, action: str) -> None:
        if not self.order_id:
            return
        body: dict[str, Any] = {}
        if action == "refund" and self.refund_amount.text().strip():
            try:
                body["amount"] = parse_reais(self.refund_amount.text())
            except ValueError as exc:
                self.title.setText(str(exc))
                return
        self.action_requested.emit(self.order_id, action, body)


class LedgerPage(QWidget):
    """Ventra's ledger: accounts, balances, transactions and the check."""

    refresh_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.accounts = AccountsModel(self)
        self.transactions = LedgerTransactionsModel(self)
        self.verdict = QLabel("")
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_requested.emit)
        top = QHBoxLayout()
        top.addWidget(self.verdict, 1)
        top.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(table(self.accounts), 1)
        layout.addWidget(table(self.transactions), 2)

    def show_ledger(
        self,
        accounts: list[dict[str, Any]],
        transactions: list[dict[str, Any]],
        verdict: dict[str, Any],
    ) -> None:
        self.accounts.replace(accounts)
        self.transactions.replace(
            [
                {"transaction_id": tx["id"], "kind": tx["kind"], "order_id": tx["order_id"], **entry}
                for tx in transactions
                for entry in tx["entries"]
            ]
        )
        if verdict.get("ok"):
            self.verdict.setText("Ledger balanced: every invariant holds")
        else:
            self.verdict.setText("Ledger violations: " + "; ".join(verdict.get("violations", [])))


class SettingsPage(QWidget):
    """Connection, API key rotation and the receiver's secrets."""

    rotate_requested = Signal()
    secret_saved = Signal(str, str)

    def __init__(self, ventra_url: str, sim_url: str, database: str) -> None:
        super().__init__()
        connection = QGroupBox("Connection")
        form = QFormLayout(connection)
        form.addRow("Ventra", QLabel(ventra_url))
        form.addRow("VentraSim", QLabel(sim_url))
        form.addRow("Database", QLabel(database))
        self.api_key = QLineEdit(readOnly=True)
        self.api_key.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        rotate = QPushButton("Rotate API key")
        rotate.clicked.connect(self.rotate_requested.emit)
        form.addRow("API key", self.api_key)
        form.addRow("", rotate)

        secrets = QGroupBox("VentraSim secrets (a wrong one shows SIG FAIL)")
        secret_form = QFormLayout(secrets)
        self.env = QComboBox()
        self.env.addItems(ENVIRONMENTS)
        self.secret = QLineEdit()
        save = QPushButton("Save secret")
        save.setObjectName("save_secret")
        save.clicked.connect(self._save)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        secret_form.addRow("Environment", self.env)
        secret_form.addRow("Secret", self.secret)
        secret_form.addRow("", save)
        secret_form.addRow("", self.message)

        layout = QVBoxLayout(self)
        layout.addWidget(connection)
        layout.addWidget(secrets)
        layout.addStretch(1)

    @Slot()
    def _save(self) -> None:
        self.secret_saved.emit(self.env.currentText(), self.secret.text())
