"""Jobs handed back while the relay is paused, held back by a provider's shaping, or of
a campaign paused meanwhile: released to the queue, due when the relay is expected back
(when shaping says; at once for a paused campaign, which claims skip), so that no job
sits leased behind a closed gate (nor is charged an attempt for it). Also ``drain``,
which empties a worker's buffer of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from mailspool.delivery.relay_gate import RelayGate
from mailspool.errors import QueueError
from mailspool.queue import Claiming

#: a hold due at once: handed back due now (Parking.give_back)
NOW = 0.0


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
        self._held: dict[tuple[float, str | None], list[str]] = {}  # (due, reply) -> ids
        self._task: asyncio.Task[None] | None = None

    def park(self, job_ids: list[str]) -> None:
        """Hand these back soon (in the background), due when the relay is back."""
        self._parked.extend(job_ids)
        self._start()

    def hold(self, job_id: str, until: float, reply: str) -> None:
        """Hand this one back soon, due at ``until`` (a time.time(), to the next second:
        one release for all those due in the same second), with ``reply``."""
        self._held.setdefault((float(math.ceil(until)), reply), []).append(job_id)
        self._start()

    def give_back(self, job_id: str) -> None:
        """Hand this one back soon, due at once (its campaign is paused: no one claims it
        until the resume)."""
        self._held.setdefault((NOW, None), []).append(job_id)
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._release())

    async def settle(self) -> None:
        """Wait until everything parked so far is handed back (or could not be)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _release(self) -> None:
        await asyncio.sleep(0)  # collect what other senders park in the same tick
        while self._parked or self._held:
            held, self._held = self._held, {}
            for (until, reply), ids in held.items():
                await self._hand_back(ids, until, reply)
            if self._parked:
                ids, self._parked = self._parked, []
                why = self.gate.last_error
                reply = f"relay paused: {why.reply}" if why is not None else None
                await self._hand_back(ids, time.time() + max(1.0, self.gate.remaining()), reply)

    async def _hand_back(self, ids: list[str], until: float, reply: str | None) -> None:
        due = None if until == NOW else until
        with contextlib.suppress(QueueError):  # else their leases lapse: claimed again
            await self.queue.release(self.owner, ids, not_before=due, reply=reply)
        self.released(ids)
