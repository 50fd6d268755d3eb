"""The event drawer: payload, signed headers, attempt timeline and Retry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.ui.models import AttemptsModel, signature_badge

SIGNED_HEADERS = (
    "x-signature",
    "x-ventra-event-id",
    "x-ventra-delivery-id",
    "x-ventra-attempt",
    "x-ventra-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


def with_deltas(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each attempt's seconds since the first one."""
    if not attempts:
        return []
    first = datetime.fromisoformat(attempts[0]["received_at"])
    return [
        {**a, "delta": (datetime.fromisoformat(a["received_at"]) - first).total_seconds()}
        for a in attempts
    ]


class EventDrawer(QWidget):
    """Details of the selected event."""

    retry_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.event_id: str | None = None
        self.title = QLabel("Select an event")
        self.title.setWordWrap(True)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setEnabled(False)
        self.retry_button.clicked.connect(self._retry)
        self.retry_result = QLabel("")
        self.retry_result.setWordWrap(True)
        self.payload = QPlainTextEdit(readOnly=True)
        self.headers = QPlainTextEdit(readOnly=True)
        self.headers.setMaximumHeight(150)
        self.attempts = AttemptsModel(self)
        table = QTableView()
        table.setModel(self.attempts)
        table.verticalHeader().hide()

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.retry_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.retry_result)
        layout.addWidget(QLabel("Attempts"))
        layout.addWidget(table, 1)
        layout.addWidget(QLabel("Signed headers of the latest attempt"))
        layout.addWidget(self.headers)
        layout.addWidget(QLabel("Payload"))
        layout.addWidget(self.payload, 2)

    def show_event(self, event: dict[str, Any]) -> None:
        """Fill the drawer from ``GET /api/events/{id}``."""
        changed = event["event_id"] != self.event_id
        self.event_id = event["event_id"]
        self.title.setText(
            f"<b>{event.get('type')}</b> · {event['event_id']} · "
            f"{signature_badge(event)} · {event.get('attempt_count')} attempts"
        )
        self.retry_button.setEnabled(True)
        if changed:
            self.retry_result.setText("")
        self.payload.setPlainText(json.dumps(event.get("payload"), indent=2, ensure_ascii=False))
        attempts = event.get("attempts", [])
        self.attempts.replace(with_deltas(attempts))
        if attempts:
            latest = attempts[-1]
            lines = [
                f"{name}: {value}"
                for name, value in latest.get("headers", [])
                if name.lower() in SIGNED_HEADERS
            ]
            self.headers.setPlainText("\n".join(lines))

    def show_retry_result(self, result: dict[str, Any]) -> None:
        status = result.get("http_status") or result.get("error_kind")
        self.retry_result.setText(
            f"Retry: attempt {result.get('attempt')} → {result.get('outcome')}"
            f" ({status}, {result.get('latency_ms')} ms)"
        )

    @Slot()
    def _retry(self) -> None:
        if self.event_id:
            self.retry_result.setText("Retrying…")
            self.retry_requested.emit(self.event_id)
