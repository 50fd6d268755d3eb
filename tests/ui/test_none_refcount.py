"""Guard against PySide6 releases that drop references to None."""

from __future__ import annotations

import asyncio
import sys

import qasync

CALLBACKS = 20_000


def test_none_refcount_stable(qloop: qasync.QEventLoop) -> None:
    """20,000 qasync callbacks leave the reference count of None in place.

    PySide6 6.12.0 on Python 3.11 drops one reference to None on every void
    Qt call, which ends in "Fatal Python error: none_dealloc".
    """

    async def spin() -> None:
        for _ in range(CALLBACKS):
            await asyncio.sleep(0)

    before = sys.getrefcount(None)
    qloop.run_until_complete(spin())
    after = sys.getrefcount(None)

    assert after >= before - 1000
