"""The worker's recorder: outcomes written to the queue in batches, one transaction each
(whatever accumulated while the last write ran), retried with backoff while the store is
unreachable.

Senders wait while ``cap`` outcomes are not yet durable, so a crash leaves at most that
many messages delivered but unrecorded beside those in flight (the duplicate window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailspool.errors import QueueError
from mailspool.models import Outcome
from mailspool.queue import Claiming

log = logging.getLogger(__name__)

#: told of each batch: its outcomes, and whether the store took them
Settled = Callable[[list[Outcome], bool], None]


class Recorder:
    """Writes a worker's outcomes to ``queue`` as ``owner`` (only leases it still holds
    are recorded). Senders wait (:meth:`room`) while ``cap`` outcomes are not yet
    durable; a closing recorder keeps retrying an unreachable store for ``grace``
    seconds. ``settled`` is told of each batch and whether it was recorded; ``fail``
    stops the worker when the outcomes cannot be recorded at all."""

    def __init__(
        self,
        *,
        queue: Claiming,
        owner: str,
        cap: int,
        grace: float,
        settled: Settled,
        fail: Callable[[BaseException], None],
    ) -> None:
        self.queue = queue
        self.owner = owner
        self.cap = max(1, cap)
        self.grace = grace
        self._settled = settled
        self._fail = fail
        self._outcomes: list[Outcome] = []
        self._ready = asyncio.Event()
        self._recording = 0  # outcomes in the write that runs now
        self._room = asyncio.Event()  # set while the unrecorded backlog is under the cap
        self._room.set()
        self._unrecorded: set[str] = set()  # outcomes the store never took
        self._closing = False
        #: the last write failed: claim nothing until the outcomes are durable
        self.failing = False

    def add(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._ready.set()
        self._check_room()

    async def room(self) -> None:
        """Wait until the unrecorded backlog is under the cap."""
        if not self._room.is_set():
            await self._room.wait()

    def close(self) -> None:
        """Write what is left, then let ``run`` return."""
        self._closing = True
        self._ready.set()

    def _check_room(self) -> None:
        if len(self._outcomes) + self._recording >= self.cap:
            self._room.clear()
        else:
            self._room.set()

    async def run(self) -> None:
        while True:
            if not self._outcomes:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            self._recording = len(batch)
            try:
                recorded = await self._record(batch)
            finally:
                self._recording = 0
                self._check_room()
            if not recorded:
                # the store stayed unreachable: these keep their leases (they expire and
                # the jobs come back, a sent one counted as ambiguous) and so does every
                # outcome still to come; none is handed back as if never tried
                self._unrecorded.update(o.job_id for o in batch)
            self._settled(batch, recorded)

    async def _record(self, batch: list[Outcome]) -> bool:
        """Record with backoff while the store is unreachable; False when giving up (only
        once closing and the grace has run out). An outcome whose lease has moved on is
        not applied, and counts as recorded: the job is another's now."""
        delay, deadline = 0.1, None
        while True:
            if self._unrecorded:  # an earlier batch failed: keep the order, fail these too
                return False
            try:
                await self.queue.record(self.owner, batch)
            except QueueError as exc:
                if self._closing:
                    deadline = deadline or time.monotonic() + self.grace
                    if time.monotonic() > deadline:
                        self._fail(exc)
                        return False
                log.warning("could not record %d outcomes, retrying: %s", len(batch), exc)
                self.failing = True
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
            else:
                self.failing = False
                return True
