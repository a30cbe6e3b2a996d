"""Campaign control at the worker: no job of a paused campaign is sent until it is
resumed, and none of a cancelled one ever (``mailspool campaign``).

Claims hand out no job of a paused campaign (each backend filters them), and a cancel
ends a campaign's queued and deferred jobs in the queue itself. What reaches a worker
all the same is a job claimed just before the pause or the cancel (or, with Redis, while
a large cancel goes a batch at a time), or one of a cancelled campaign that was queued
again afterwards (or whose lease expired). The worker checks:

    claim    the claimed batch's campaigns, read from the queue (one query a batch):
             fresh, so a job claimed after a cancel is never sent
    pickup   a sender takes a job from the buffer: the states as last read (at most
             REFRESH seconds old), so jobs buffered before a pause wait no rate slot
    send     its rate-limit slot taken, just before the message goes out: the same

A job of a paused campaign is handed back uncharged (due at once: claims skip it until
the resume); one of a cancelled campaign is recorded CANCELLED, never sent. A message
already in its SMTP transaction finishes. The states of every campaign not active are
read again every REFRESH seconds, so every worker sharing the queue stops within about
REFRESH seconds plus one message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from mailspool.delivery.observer import Observer
from mailspool.delivery.parking import Parking
from mailspool.delivery.recorder import Recorder
from mailspool.errors import MailspoolError, QueueError
from mailspool.models import CampaignState, Job, Outcome, State
from mailspool.queue import Claiming

__all__ = ["REFRESH", "CampaignGate", "CampaignHalted", "cancelled"]

log = logging.getLogger(__name__)

#: seconds between two readings of the campaigns' states (a pause or cancel is seen
#: within this by every worker)
REFRESH = 0.5
#: the reply a job cancelled by its worker is left with
CANCELLED_REPLY = "campaign cancelled"


class CampaignHalted(MailspoolError):
    """Raised where a message is about to go out (the worker's ``ready``), when its
    campaign was paused or cancelled meanwhile: the worker catches it and hands the job
    back or records it cancelled. Never leaves the worker."""


def cancelled(job: Job) -> Outcome:
    """The outcome of a job whose campaign was cancelled before it was sent."""
    return Outcome(job.id, State.CANCELLED, CANCELLED_REPLY)


class CampaignGate:
    """The worker's view of campaign control (see the module docstring): the states of
    the campaigns not active, read from ``queue``; jobs of a paused campaign go back
    through ``parking``, those of a cancelled one are recorded by ``recorder`` (and
    ``tell`` tells the observers)."""

    def __init__(
        self,
        *,
        queue: Claiming,
        parking: Parking,
        recorder: Recorder,
        tell: Callable[[Callable[[Observer], object]], None],
    ) -> None:
        self.queue = queue
        self.parking = parking
        self.recorder = recorder
        self.tell = tell
        self._states: dict[str, CampaignState] = {}

    async def run(self) -> None:
        """Read every state again each REFRESH seconds until cancelled; while the queue
        does not answer, the last reading stands (claims and outcomes wait as well)."""
        while True:
            try:
                await self.refresh()
            except QueueError as exc:
                log.warning("could not read the campaigns' states: %s", exc)
            await asyncio.sleep(REFRESH)

    async def refresh(self) -> None:
        """Read the states of every campaign not active now."""
        self._states = await self.queue.campaign_states()

    async def admit(self, jobs: Sequence[Job]) -> list[Job]:
        """The claimed jobs whose campaign is active, its state read now; the others are
        handed back (paused) or recorded cancelled."""
        if not jobs:
            return []
        names = {j.campaign for j in jobs}
        found = await self.queue.campaign_states(sorted(names))
        for name in names:  # a fresher reading than the last refresh's
            if name in found:
                self._states[name] = found[name]
            else:
                self._states.pop(name, None)
        return [j for j in jobs if not self.stops(j)]

    def stops(self, job: Job) -> bool:
        """Whether the job's campaign, as last read, stops it: then it is handed back or
        recorded cancelled already."""
        state = self._states.get(job.campaign)
        if state is None:
            return False
        if state is CampaignState.PAUSED:
            self.parking.give_back(job.id)
        else:
            self._cancel(job)
        return True

    def check(self, job: Job) -> None:
        """Raise CampaignHalted when the job's campaign, as last read, is not active."""
        if job.campaign in self._states:
            raise CampaignHalted(f"campaign {job.campaign} is {self._states[job.campaign]}")

    def halted(self, job: Job) -> Outcome | None:
        """After CampaignHalted: the job's cancelled outcome, or None once it is handed
        back (paused, or resumed meanwhile: it is claimed again)."""
        if self._states.get(job.campaign) is CampaignState.CANCELLED:
            self.tell(lambda obs: obs.cancelled(job))
            return cancelled(job)
        self.parking.give_back(job.id)
        return None

    def _cancel(self, job: Job) -> None:
        self.tell(lambda obs: obs.cancelled(job))
        self.recorder.add(cancelled(job))
