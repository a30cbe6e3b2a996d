"""The suppression check at enqueue: jobs' recipients against the suppression list, one
backend query per list for a whole batch (the producer's, the HTTP API's group commit).

A job whose every recipient is suppressed is queued in state SUPPRESSED, final, with an
empty message: ``status`` counts it, and a later run of the campaign finds it final and
does not send it. A job with some recipients suppressed goes to the others: its envelope
loses the suppressed ones, its message stays as it is (the headers still name them, as
they name a Bcc's fellow recipients; the envelope decides who receives it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mailspool.message.optout import DEFAULT_LIST
from mailspool.models import Job, State
from mailspool.queue import Suppressing
from mailspool.queue.suppression import SuppressionList

log = logging.getLogger(__name__)
_warned: set[str] = set()


def suppression_list(queue: Suppressing) -> SuppressionList | None:
    """The queue's suppression list, or None (logged once) for a backend that keeps none."""
    try:
        return queue.suppressions
    except NotImplementedError:
        name = type(queue).__name__
        if name not in _warned:
            _warned.add(name)
            log.warning("%s keeps no suppression list: recipients are not checked", name)
        return None


async def screen(suppressions: SuppressionList, jobs: Sequence[Job], now: float) -> int:
    """Check every job's recipients, one query per list (``job.list_name``, "" being the
    default list), and apply what was found to the jobs themselves (see the module
    docstring). Returns how many jobs became SUPPRESSED. Store errors propagate: nothing
    is queued unchecked."""
    by_list: dict[str, list[Job]] = {}
    for job in jobs:
        by_list.setdefault(job.list_name or DEFAULT_LIST, []).append(job)
    suppressed = 0
    for list_name, group in by_list.items():
        addresses = {a for job in group for a in job.recipients}
        found = await suppressions.suppressed(addresses, list_name, now)
        if not found:
            continue
        for job in group:
            kept = tuple(a for a in job.recipients if a not in found)
            if len(kept) == len(job.recipients):
                continue
            if kept:
                job.recipients = kept
                continue
            suppressed += 1
            mark_suppressed(job)
    return suppressed


def mark_suppressed(job: Job) -> None:
    """``job`` as queued when every recipient is suppressed: final, nothing to send."""
    job.state = State.SUPPRESSED
    job.last_reply = f"suppressed: {', '.join(job.recipients)}"[:1000]
    job.message = b""
    job.body_offset = 0
    job.attachments = ()
