"""The suppression check just before sending: the recipients of a whole claimed batch
against the suppression list, one query per list (no round trip per message).

A recipient suppressed after its job was queued leaves the job's envelope; the message
is sent as it is to the others (its headers still name everyone, as they always did). A
job left with no recipient is not sent: the worker records it SUPPRESSED.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from mailspool.message.optout import DEFAULT_LIST
from mailspool.models import Job
from mailspool.queue import Suppressing
from mailspool.queue.suppression import SuppressionList

log = logging.getLogger(__name__)


class Screen:
    """Checks a worker's claimed batches against ``queue``'s suppression list (looked up
    at the first batch, once the queue is open). A queue that keeps none is logged once
    and its batches pass unchecked."""

    def __init__(self, queue: Suppressing) -> None:
        self.queue = queue
        self._list: SuppressionList | None = None
        self._looked_up = False
        #: job id -> the recipients dropped from its envelope (for the job's reply)
        self.dropped: dict[str, list[str]] = {}

    def suppression_list(self) -> SuppressionList | None:
        if not self._looked_up:
            self._looked_up = True
            try:
                self._list = self.queue.suppressions
            except NotImplementedError:
                name = type(self.queue).__name__
                log.warning("%s keeps no suppression list: recipients are not checked", name)
        return self._list

    async def check(
        self, jobs: Sequence[Job], now: float | None = None
    ) -> tuple[list[Job], list[Job]]:
        """(the jobs to send, with suppressed recipients dropped from their envelopes;
        the jobs whose every recipient is suppressed), each in claim order. Raises what
        the store raises (QueueError): nothing is to be sent unchecked."""
        suppressions = self.suppression_list()
        if suppressions is None or not jobs:
            return list(jobs), []
        at = time.time() if now is None else now
        by_list: dict[str, list[Job]] = {}
        for job in jobs:
            by_list.setdefault(job.list_name or DEFAULT_LIST, []).append(job)
        found: dict[str, set[str]] = {}
        for name, group in by_list.items():
            addresses = {a for job in group for a in job.recipients}
            found[name] = await suppressions.suppressed(addresses, name, at)
        send: list[Job] = []
        gone: list[Job] = []
        for job in jobs:
            hits = found[job.list_name or DEFAULT_LIST]
            dropped = [a for a in job.recipients if a in hits] if hits else []
            if not dropped:
                send.append(job)
            elif len(dropped) < len(job.recipients):
                job.recipients = tuple(a for a in job.recipients if a not in hits)
                self.dropped[job.id] = dropped
                send.append(job)
            else:
                gone.append(job)
        return send, gone
