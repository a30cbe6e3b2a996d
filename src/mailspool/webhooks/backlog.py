"""What an endpoint has not taken yet (the drain of webhooks/run.py waits for it to be
nothing; ``mailspool webhooks list`` shows it)."""

from __future__ import annotations

from dataclasses import dataclass

from mailspool.queue.events import MAX_PAGE, EventLog

__all__ = ["Backlog", "backlog"]


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
