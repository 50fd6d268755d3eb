"""Render a BR Code as a QR image for the window."""

from __future__ import annotations

import qrcode
from PySide6.QtGui import QColor, QImage, QPainter


def qr_image(payload: str, scale: int = 5, border: int = 4) -> QImage:
    """Draw the QR code of ``payload`` as a black-on-white image."""
    code = qrcode.QRCode(border=border, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(payload)
    code.make(fit=True)
    matrix = code.get_matrix()
    size = len(matrix) * scale
    image = QImage(size, size, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    black = QColor("black")
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                painter.fillRect(x * scale, y * scale, scale, scale, black)
    painter.end()
    return image
