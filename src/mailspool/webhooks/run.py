"""A dispatcher running beside a command's delivery: started with the command, drained
at the end of ``send`` (its events delivered, for up to ``--webhook-drain``), stopped
with it. What is not delivered by then stays in the job store for the next ``worker``,
``serve``, ``send`` or ``mailspool webhooks retry``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from mailspool.queue.events import MAX_PAGE, EventLog
from mailspool.webhooks.dispatcher import Dispatcher

__all__ = ["Backlog", "WebhookRun", "backlog"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """Events not yet taken by an endpoint: ``unread`` after its cursor (at most
    :data:`MAX_PAGE` counted), ``retrying`` and ``dead``."""

    unread: int
    retrying: int
    dead: int

    @property
    def waiting(self) -> int:
        return self.unread + self.retrying


async def backlog(log: EventLog, name: str) -> Backlog:
    state = next((e for e in await log.endpoints() if e.name == name), None)
    if state is None:
        return Backlog(0, 0, 0)
    unread = len(await log.read(state.cursor, MAX_PAGE))
    return Backlog(unread, state.retrying, state.dead)


class WebhookRun:
    """``async with WebhookRun(dispatcher):`` delivers in a task until the block ends."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebhookRun:
        await self.dispatcher.start()
        self._task = asyncio.create_task(self.dispatcher.run(self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)

    async def drain(self, timeout: float) -> dict[str, Backlog]:
        """Wait up to ``timeout`` seconds until every endpoint has taken every event
        (none unread, none being retried); what is left, by endpoint."""
        deadline = time.monotonic() + timeout
        names = [ep.name for ep in self.dispatcher.endpoints]
        self.dispatcher.hurry()
        while True:
            self.dispatcher.wake()
            left = {n: await backlog(self.dispatcher.log, n) for n in names}
            if all(b.waiting == 0 for b in left.values()) or time.monotonic() >= deadline:
                return left
            if self._task is not None and self._task.done():
                return left
            await asyncio.sleep(0.1)
