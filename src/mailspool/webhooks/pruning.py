"""The pruning of old job events: a dispatcher runs it beside its endpoints' deliveries,
and a command without an endpoint runs it alone (webhooks/run.py), without the
dispatcher's modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailspool.queue.events import EventLog

__all__ = ["kept_for", "prune_loop"]

log = logging.getLogger(__name__)

#: how often the log is pruned again while a command runs (seconds)
EVERY = 3600.0


def kept_for(retention: float, retry_period: float) -> float:
    """How long events are kept (seconds): ``retention``, and at least ``retry_period``,
    so that no failed event is pruned while it is still retried."""
    return max(retention, retry_period)


async def prune_loop(events: EventLog, keep: float, stop: asyncio.Event) -> None:
    """Prune the events older than ``keep`` seconds now, then every :data:`EVERY`
    seconds, until ``stop`` is set; a failure is logged and tried again next time."""
    while not stop.is_set():
        try:
            n = await events.prune(time.time() - keep)
            if n:
                log.info("pruned %d job events older than %gs", n, keep)
        except Exception as exc:
            log.warning("pruning job events failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EVERY):
                await stop.wait()
