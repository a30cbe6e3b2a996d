"""The jobs a worker's senders are on, the buffer they take them from, and what a stop
does to each.

A job is in flight from the moment a sender takes it until its outcome. It first waits:
for room in the recorder, for a connection, for a rate-limit or per-domain concurrency
slot. Then its transaction begins (the transport writes MAIL FROM and calls
``Envelope.begin``), and from then on the relay may take the message.

    stop (first signal)   a waiting job's sender is cancelled at once: the job is never
                          sent after the stop, and goes back to the queue untried (no
                          attempt charged, not ambiguous) with the buffered jobs, before
                          a begun one is waited for (it finishes within the grace)
    stop_now (second)     a begun one is cut short too, and recorded as interrupted
                          (possibly delivered: ambiguous)
"""

from __future__ import annotations

import asyncio
from typing import Any

from mailspool.models import Job

__all__ = ["InFlight", "drain", "stop_senders"]


class InFlight:
    """The jobs the senders are on: those still waiting, by the sender task to cancel when
    the worker stops (:meth:`call_off`), and those whose transaction has begun
    (``begun``), which a stop lets finish."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Task[Any]] = {}
        #: transaction begun (MAIL FROM written), no outcome yet: the relay may have it
        self.begun: set[str] = set()
        #: jobs whose sends a stop called off: untried, to be handed back
        self.called_off: set[str] = set()

    def __len__(self) -> int:
        return len(self._waiting) + len(self.begun)

    def add(self, job_id: str) -> None:
        """The current task (a sender) takes the job: waiting until :meth:`begin`."""
        task = asyncio.current_task()
        assert task is not None, "a job is taken by a sender task"
        self._waiting[job_id] = task

    def begin(self, job_id: str) -> None:
        """The job's transaction has begun: a stop no longer calls it off."""
        self._waiting.pop(job_id, None)
        self.begun.add(job_id)  # even after a call-off: a transport that went on regardless

    def discard(self, job_id: str) -> None:
        """The job has its outcome (or goes back to the queue)."""
        self._waiting.pop(job_id, None)
        self.begun.discard(job_id)

    def call_off(self) -> None:
        """Cancel the senders of every job still waiting; each job stays held by the
        worker, which hands it back to the queue untried."""
        waiting, self._waiting = self._waiting, {}
        self.called_off.update(waiting)
        for task in waiting.values():
            task.cancel()


def drain(buffer: asyncio.Queue[Job | None]) -> list[str]:
    """Take every job out of the senders' ``buffer`` (jobs claimed, no sender yet); the
    ids of those taken. A None (a sender's signal to end) stays for a sender."""
    ids = []
    while not buffer.empty():
        job = buffer.get_nowait()
        if job is None:
            buffer.put_nowait(None)
            break
        ids.append(job.id)
    return ids


async def stop_senders(
    senders: list[asyncio.Task[None]], buffer: asyncio.Queue[Job | None], grace: float | None
) -> None:
    """End the senders: each takes a None from ``buffer`` once it is done with its job;
    those still sending after ``grace`` seconds are cancelled."""
    for _ in senders:
        buffer.put_nowait(None)
    _, late = await asyncio.wait(senders, timeout=grace)
    for t in late:
        t.cancel()
    await asyncio.gather(*late, return_exceptions=True)
