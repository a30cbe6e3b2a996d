"""Send windows at claim time: a claimed job whose campaign has a schedule (schedule.py,
stored with the campaign when it was enqueued) and that falls outside its windows is
handed back, due when its next window opens, without an attempt charged. Jobs are made
due inside a window when they are enqueued; this catches those whose window closed
while they waited (a backlog, a retry that came due at night)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence

from mailspool.errors import QueueError
from mailspool.models import Job
from mailspool.queue import Claiming
from mailspool.schedule import Schedule

__all__ = ["SendWindows"]

log = logging.getLogger(__name__)

#: a job due within this many seconds is sent now (a window opening this instant)
SLACK = 1.0


class SendWindows:
    """Each campaign's schedule, read from ``settings`` once per campaign."""

    def __init__(self, settings: Claiming) -> None:
        self.settings = settings
        self._known: dict[str, Schedule | None] = {}

    async def load(self, campaigns: Iterable[str]) -> None:
        for campaign in set(campaigns) - self._known.keys():
            stored = (await self.settings.campaign_settings(campaign)).get("schedule")
            try:
                schedule = Schedule.from_json(stored) if stored else None
            except (ValueError, TypeError) as exc:  # written by a later version, say
                log.warning("campaign %s: its send windows cannot be read: %s", campaign, exc)
                schedule = None
            self._known[campaign] = None if schedule is None or schedule.empty else schedule

    def split(self, jobs: Sequence[Job], now: float) -> tuple[list[Job], dict[float, list[Job]]]:
        """(the jobs to send now, the others by when they are due)."""
        send: list[Job] = []
        later: dict[float, list[Job]] = {}
        for job in jobs:
            schedule = self._known.get(job.campaign)
            due = schedule.due(now, job.timezone) if schedule is not None else now
            if due <= now + SLACK:
                send.append(job)
            else:
                later.setdefault(due, []).append(job)
        return send, later

    async def hand_back(
        self, queue: Claiming, owner: str, jobs: Sequence[Job]
    ) -> tuple[list[Job], list[str]]:
        """(the claimed jobs to send now, the ids of those handed back to ``queue``,
        each due when its window opens, uncharged)."""
        if not jobs:
            return [], []
        await self.load(j.campaign for j in jobs)
        send, later = self.split(jobs, time.time())
        released: list[str] = []
        for due, waiting in later.items():
            ids = [j.id for j in waiting]
            with contextlib.suppress(QueueError):  # else their leases lapse: claimed again
                await queue.release(owner, ids, not_before=due, reply=waiting_reply(due))
            released += ids
        return send, released


def waiting_reply(due: float) -> str:
    """The reply a job handed back for its window is left with."""
    when = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"waiting for the send window: due {when}"
