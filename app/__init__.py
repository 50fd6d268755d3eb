"""Ventra, a sandbox Pix escrow platform, and VentraSim, its merchant simulator."""

__version__ = "0.1.0"
