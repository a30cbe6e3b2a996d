"""Jobs handed back while the relay is paused, or held back by a provider's shaping:
released to the queue, due when the relay is expected back (or when shaping says), so
that no job sits leased behind a closed gate (nor is charged an attempt for it)."""

from __future__ import annotations

import asyncio
import contextlib
import math
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
        with contextlib.suppress(QueueError):  # else their leases lapse: claimed again
            await self.queue.release(self.owner, ids, not_before=until, reply=reply)
        self.released(ids)
