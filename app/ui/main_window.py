"""The main window: events timeline, orders, ledger and settings."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolBar,
)

from app.ui.client import ApiClient
from app.ui.drawer import EventDrawer
from app.ui.models import EventsModel
from app.ui.pages import (
    ENVIRONMENTS,
    LedgerPage,
    OrdersPage,
    SettingsPage,
    parse_reais,
    table,
)
from app.ui.tasks import TaskRunner

log = logging.getLogger("ui")

POLL_INTERVAL_MS = 400
MODES = ("normal", "offline", "timeout")


class MainWindow(QMainWindow):
    """One window over both APIs; every call runs on the qasync loop."""

    events_updated = Signal(int)
    order_paid = Signal(str)
    mode_changed = Signal(str, str)
    error_shown = Signal(str)

    def __init__(self, client: ApiClient) -> None:
        super().__init__()
        self.client = client
        self.tasks = TaskRunner(self.show_error)
        self._last_attempt_id = -1
        self._polling = False
        endpoints = client.endpoints
        self.setWindowTitle("Ventra + VentraSim")
        self.resize(1200, 760)

        self._build_toolbar()
        self.events = EventsModel(self)
        self.events_view = table(self.events)
        self.events_view.clicked.connect(self._event_clicked)
        self.drawer = EventDrawer()
        self.drawer.retry_requested.connect(self.retry_event)
        splitter = QSplitter()
        splitter.addWidget(self.events_view)
        splitter.addWidget(self.drawer)
        splitter.setSizes([700, 500])

        self.orders = OrdersPage()
        self.orders.order_selected.connect(self.load_order)
        self.orders.action_requested.connect(self.order_action)
        self.ledger = LedgerPage()
        self.ledger.refresh_requested.connect(self.load_ledger)
        self.settings = SettingsPage(endpoints.ventra_url, endpoints.sim_url, endpoints.database)
        self.settings.api_key.setText(endpoints.api_key)
        self.settings.rotate_requested.connect(self.rotate_key)
        self.settings.secret_saved.connect(self.save_secret)

        self.tabs = QTabWidget()
        self.tabs.addTab(splitter, "Events")
        self.tabs.addTab(self.orders, "Orders")
        self.tabs.addTab(self.ledger, "Ledger")
        self.tabs.addTab(self.settings, "Settings")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)

        status = self.statusBar()
        status.addPermanentWidget(QLabel(f"Ventra {endpoints.ventra_url}"))
        status.addPermanentWidget(QLabel(f"VentraSim {endpoints.sim_url}"))
        status.addPermanentWidget(QLabel(f"DB {endpoints.database}"))

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.timeout.connect(self.poll)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Actions")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.env = QComboBox()
        self.env.addItems(ENVIRONMENTS)
        self.env.currentTextChanged.connect(lambda _: self.load_mode())
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.activated.connect(lambda _: self.set_mode(self.mode.currentText()))
        self.amount = QLineEdit("19,99")
        self.amount.setMaximumWidth(100)
        self.description = QLineEdit(placeholderText="description")
        self.description.setMaximumWidth(220)
        self.pay_button = QPushButton("Create && pay order")
        self.pay_button.clicked.connect(self.create_and_pay)
        create = QPushButton("Create order")
        create.clicked.connect(self.create_order)
        for label, widget in (
            ("Environment ", self.env),
            (" Delivery mode ", self.mode),
            (" Amount R$ ", self.amount),
            (" ", self.description),
        ):
            bar.addWidget(QLabel(label))
            bar.addWidget(widget)
        bar.addWidget(self.pay_button)
        bar.addWidget(create)

    def start(self) -> None:
        """Load the first data and start polling for new attempts."""
        self.load_mode()
        self.poll()
        self.timer.start()

    @Slot(str)
    def show_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 10_000)
        self.error_shown.emit(message)

    def _amount(self) -> int | None:
        try:
            return parse_reais(self.amount.text())
        except ValueError as exc:
            self.show_error(str(exc))
            return None

    @Slot()
    def create_and_pay(self) -> None:
        amount = self._amount()
        if amount is None:
            return
        env = self.env.currentText()

        def done(order: dict[str, Any]) -> None:
            self.statusBar().showMessage(f"order {order['id']} paid", 5000)
            self.order_paid.emit(order["id"])

        self.tasks.run(
            self.client.create_and_pay(amount, env, self.description.text() or None),
            done,
            "create and pay",
        )

    @Slot()
    def create_order(self) -> None:
        amount = self._amount()
        if amount is None:
            return
        body: dict[str, Any] = {"amount": amount, "env": self.env.currentText()}
        if self.description.text():
            body["description"] = self.description.text()

        def done(order: dict[str, Any]) -> None:
            self.tabs.setCurrentWidget(self.orders)
            self.orders.select(order["id"])

        self.tasks.run(self.client.sim("POST", "/api/dev/orders", body), done, "create order")

    def load_mode(self) -> None:
        env = self.env.currentText()

        def done(result: dict[str, Any]) -> None:
            for endpoint in result["data"]:
                if endpoint["env"] == env and endpoint["mode"] in MODES:
                    self.mode.setCurrentText(endpoint["mode"])

        self.tasks.run(self.client.sim("GET", "/api/endpoints"), done, "load modes")

    @Slot(str)
    def set_mode(self, mode: str) -> None:
        env = self.env.currentText()

        def done(_: Any) -> None:
            if self.env.currentText() == env:
                self.mode.setCurrentText(mode)
            self.statusBar().showMessage(f"{env} receiver is now {mode}", 5000)
            self.mode_changed.emit(env, mode)

        self.tasks.run(
            self.client.sim("PUT", f"/api/endpoints/{env}", {"mode": mode}), done, "set mode"
        )

    @Slot()
    def poll(self) -> None:
        """Reload the timeline when VentraSim has stored new attempts."""
        if self._polling:
            return
        self._polling = True
        self.tasks.run(self._poll_once(), None, "refresh")

    async def _poll_once(self) -> None:
        try:
            after = max(self._last_attempt_id, 0)
            fresh = await self.client.sim("GET", f"/api/attempts?after_id={after}&limit=1000")
            rows = fresh["data"]
            if rows or self._last_attempt_id < 0:
                if rows:
                    self._last_attempt_id = max(r["id"] for r in rows)
                else:
                    self._last_attempt_id = 0
                events = await self.client.sim("GET", "/api/events?limit=200")
                self.events.replace(events["data"])
                self.events_updated.emit(len(events["data"]))
                if self.drawer.event_id:
                    await self._load_event(self.drawer.event_id)
                if self.tabs.currentWidget() is self.orders:
                    await self._load_orders()
        finally:
            self._polling = False

    @Slot()
    def _event_clicked(self, index: Any) -> None:
        row = self.events.row_at(index.row())
        if row:
            self.tasks.run(self._load_event(row["event_id"]), None, "load event")

    async def _load_event(self, event_id: str) -> None:
        event = await self.client.sim("GET", f"/api/events/{event_id}")
        self.drawer.show_event(event)

    @Slot(str)
    def retry_event(self, event_id: str) -> None:
        async def retry() -> dict[str, Any]:
            result = await self.client.sim("POST", f"/api/events/{event_id}/retry")
            await asyncio.sleep(0.1)
            await self._load_event(event_id)
            return result

        self.tasks.run(retry(), self.drawer.show_retry_result, "retry")

    async def _load_orders(self) -> None:
        orders = await self.client.sim("GET", "/api/orders?limit=200")
        self.orders.model.replace(orders["data"])

    @Slot(str)
    def load_order(self, order_id: str) -> None:
        async def load() -> None:
            order = await self.client.ventra("GET", f"/v1/orders/{order_id}")
            ledger = await self.client.ventra("GET", f"/v1/ledger/transactions?order_id={order_id}")
            self.orders.show_ventra_order(order, ledger["data"])
            await self._load_orders()

        self.tasks.run(load(), None, "load order")

    @Slot(str, str, object)
    def order_action(self, order_id: str, action: str, body: dict[str, Any]) -> None:
        self.tasks.run(
            self.client.sim("POST", f"/api/dev/orders/{order_id}/{action}", body or None),
            lambda _: self.load_order(order_id),
            action,
        )

    @Slot()
    def load_ledger(self) -> None:
        async def load() -> None:
            accounts = await self.client.ventra("GET", "/v1/ledger/accounts")
            transactions = await self.client.ventra("GET", "/v1/ledger/transactions")
            verdict = await self.client.ventra("GET", "/v1/ledger/verify")
            self.ledger.show_ledger(accounts["data"], transactions["data"], verdict)

        self.tasks.run(load(), None, "load ledger")

    @Slot(int)
    def _tab_changed(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if widget is self.ledger:
            self.load_ledger()
        elif widget is self.orders:
            self.tasks.run(self._load_orders(), None, "load orders")

    @Slot()
    def rotate_key(self) -> None:
        async def rotate() -> str:
            result = await self.client.ventra("POST", "/settings/api-key")
            key = result["api_key"]
            self.client.set_api_key(key)
            # VentraSim's merchant actions call Ventra with the saved key.
            await self.client.sim("PUT", "/api/connection", {"api_key": key})
            return key

        def done(key: str) -> None:
            self.settings.api_key.setText(key)
            self.statusBar().showMessage("API key rotated; the old key no longer works", 8000)

        self.tasks.run(rotate(), done, "rotate key")

    @Slot(str, str)
    def save_secret(self, env: str, secret: str) -> None:
        def done(_: Any) -> None:
            self.settings.message.setText(f"secret of {env} saved")

        def failed(message: str) -> None:
            self.settings.message.setText(message)

        runner = TaskRunner(failed)
        runner.run(
            self.client.sim("PUT", f"/api/endpoints/{env}", {"secret": secret}), done, "save secret"
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        self.tasks.cancel_all()
        super().closeEvent(event)
