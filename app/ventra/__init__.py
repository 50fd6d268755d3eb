"""Ventra: the sandbox Pix escrow platform (API, orders, ledger, delivery)."""
