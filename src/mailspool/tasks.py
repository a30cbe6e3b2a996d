"""Cancelling background tasks so that they do end.

A cancellation can be lost: redis-py 8 sometimes swallows the ``CancelledError`` of a
command cancelled at the wrong moment and returns normally, and a loop that then goes
on (a refresher sleeping between readings) never ends; whoever gathers it waits
forever. :func:`cancel_and_wait` cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]

#: how long a cancelled task gets to end before it is cancelled again
AGAIN_AFTER = 0.2


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended (its exception retrieved),
    cancelling again any that is still running after :data:`AGAIN_AFTER` seconds."""
    every = list(tasks)
    pending = {t for t in every if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=AGAIN_AFTER)
    for task in every:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" warning
