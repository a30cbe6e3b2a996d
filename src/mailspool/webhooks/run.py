"""Webhook delivery running beside a command's delivery: started with the command,
drained at the end of ``send`` and ``worker --drain`` (its events delivered, for up to
``--webhook-drain``), stopped with it. What is not delivered by then stays in the job
store for the next ``worker``, ``serve``, ``send`` or ``mailspool webhooks retry``.

It runs in a child process (:mod:`~mailspool.webhooks.process`) where the queue can be
opened by another process, else in this one; without an endpoint, only the pruning of
old events runs, here (webhooks/pruning.py: then the dispatcher is not even imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailspool.queue.events import EventLog
from mailspool.webhooks.pruning import prune_loop

if TYPE_CHECKING:
    from mailspool.webhooks.backlog import Backlog
    from mailspool.webhooks.dispatcher import Dispatcher
    from mailspool.webhooks.endpoints import WebhookEndpoint
    from mailspool.webhooks.process import DispatcherProcess

__all__ = ["WebhookRun", "register"]

#: how long the lease taken by :func:`register` lasts (seconds): long enough to be a
#: lease, too short to keep the child, or another process, waiting
REGISTER_LEASE = 0.001
#: a backlog this small is looked at again every 10 ms while draining, a larger one
#: every 100 ms (each look reads up to a page of events)
NEARLY_DONE = 200


async def register(log: EventLog, endpoints: Sequence[WebhookEndpoint]) -> None:
    """Make each endpoint known to the store now, at the newest event, with a lease
    that ends at once: the child process, which takes a moment to start, then
    delivers every event written after the command started, not only those written
    after it came up."""
    owner = f"register-{os.getpid()}"
    for ep in endpoints:
        await log.lease(ep.name, owner, REGISTER_LEASE)


class WebhookRun:
    """``async with WebhookRun(...):`` delivers until the block ends, with
    ``dispatcher`` in a task of this process or in the child ``process``; or, with
    neither, prunes the events older than ``prune_after`` seconds (a dispatcher prunes
    them itself)."""

    def __init__(
        self,
        log: EventLog,
        endpoints: Sequence[WebhookEndpoint],
        *,
        dispatcher: Dispatcher | None = None,
        process: DispatcherProcess | None = None,
        prune_after: float | None = None,
    ) -> None:
        self.log = log
        self.endpoints = list(endpoints)
        self.dispatcher = dispatcher
        self.process = process
        self.prune_after = prune_after
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebhookRun:
        if self.process is not None:
            await register(self.log, self.endpoints)
            await self.process.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
            self._task = asyncio.create_task(self.dispatcher.run(self._stop))
        elif self.process is None and self.prune_after is not None:
            self._task = asyncio.create_task(prune_loop(self.log, self.prune_after, self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)
        if self.process is not None:
            await self.process.stop()

    def _running(self) -> bool:
        if self.process is not None:
            return self.process.alive
        return self._task is not None and not self._task.done()

    async def drain(self, timeout: float) -> dict[str, Backlog]:
        """Wait up to ``timeout`` seconds until every endpoint has taken every event
        (none unread, none being retried), trying pending ones once more at once; what
        is left, by endpoint."""
        from mailspool.webhooks.backlog import backlog  # with endpoints only

        deadline = time.monotonic() + timeout
        if self.process is not None:
            await self.process.ready()
            self.process.hurry()
        if self.dispatcher is not None:
            self.dispatcher.hurry()
        while True:
            left = {ep.name: await backlog(self.log, ep.name) for ep in self.endpoints}
            done = all(b.waiting == 0 for b in left.values())
            if done or time.monotonic() >= deadline or not self._running():
                return left
            if self.dispatcher is not None:
                self.dispatcher.wake()
            # nearly done: look again soon (the run's end waits on it); else let it work
            nearly = all(b.unread < NEARLY_DONE for b in left.values())
            await asyncio.sleep(0.01 if nearly else 0.1)
