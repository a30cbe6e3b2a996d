"""Jobs handed back while the relay is paused: released to the queue, due when the relay
is expected back, so that no job sits leased behind a closed gate (nor is charged an
attempt for it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from mailspool.delivery.relay_gate import RelayGate
from mailspool.errors import QueueError
from mailspool.queue import Claiming


class Parking:
    """Hands back the jobs of ``owner`` parked behind ``gate``, in one release per tick;
    ``released`` is told which ids the queue has back."""

    def __init__(
        self,
        *,
        queue: Claiming,
        owner: str,
        gate: RelayGate,
        released: Callable[[list[str]], None],
    ) -> None:
        self.queue = queue
        self.owner = owner
        self.gate = gate
        self.released = released
        self._parked: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def park(self, job_ids: list[str]) -> None:
        """Hand these back soon (in the background)."""
        self._parked.extend(job_ids)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._release())

    async def settle(self) -> None:
        """Wait until everything parked so far is handed back (or could not be)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _release(self) -> None:
        await asyncio.sleep(0)  # collect what other senders park in the same tick
        while self._parked:
            ids, self._parked = self._parked, []
            until = time.time() + max(1.0, self.gate.remaining())
            why = self.gate.last_error
            reply = f"relay paused: {why.reply}" if why is not None else None
            with contextlib.suppress(QueueError):
                await self.queue.release(self.owner, ids, not_before=until, reply=reply)
            self.released(ids)
