"""Jobs built by hand, for the tests that hand them straight to a queue or a worker."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from mailspool.models import Job, State

if TYPE_CHECKING:
    from mailspool.queue import Queue

#: the reason given to the servers that receive make_job's deliverable messages: they are
#: hand-made (no Date header) and go straight to a worker, so the tests that deliver them
#: are of the worker, not of composed mail, and their servers do not check them
HAND_MADE = "delivers make_job's hand-made messages (no Date header) through a worker"


def make_job(
    i: int,
    *,
    campaign: str = "c1",
    row: int | None = None,
    to: str | None = None,
    deliverable: bool = False,
    **fields: Any,
) -> Job:
    """Job ``i`` of ``campaign``, to ``to`` (default ``user{i}@example.com``).

    As the queue tests store it by default: id ``{campaign}-{i:05d}``, keyed by its
    recipient, from row ``row`` (default ``i + 2``, the rows of a CSV file after its
    header), a bare message.

    ``deliverable``: as the worker tests send it: id and key ``job{i:05d}``, a whole
    message (From, To, Subject, Message-ID: see HAND_MADE), made now, from row ``row``
    (default 0).

    ``fields``: any other of the job's fields.
    """
    to = to or f"user{i}@example.com"
    if deliverable:
        jid = f"job{i:05d}"
        data = (
            f"From: a@example.com\r\nTo: {to}\r\nSubject: t{i}\r\n"
            f"Message-ID: <{jid}@example.com>\r\n\r\nhello\r\n"
        ).encode()
        job = Job(
            jid, campaign, jid, f"<{jid}@example.com>", "a@example.com", (to,), data,
            row=row or 0, created_at=time.time(),
        )  # fmt: skip
    else:
        job = Job(
            id=f"{campaign}-{i:05d}",
            campaign=campaign,
            key=to,
            message_id=f"<{campaign}-{i}@example.com>",
            sender="news@example.com",
            recipients=(to,),
            message=b"Subject: hi\r\n\r\nbody\r\n",
            row=row if row is not None else i + 2,
        )
    return dataclasses.replace(job, **fields) if fields else job


def suppressed(job: Job) -> Job:
    """A job as the producer offers it when every recipient is suppressed."""
    return dataclasses.replace(job, state=State.SUPPRESSED, message=b"")


async def claim_n(
    queue: Queue, owner: str, n: int, lease: float = 60, campaign: str | None = None
) -> list[Job]:
    """Claims until ``owner`` holds ``n`` jobs (or 10 s pass): a broker's messages may
    reach its consumer a moment after they were published, more so on a busy machine,
    and a claim takes only what has arrived."""
    jobs: list[Job] = []
    deadline = time.monotonic() + 10
    while len(jobs) < n and time.monotonic() < deadline:
        got = await queue.claim(owner, n - len(jobs), lease, campaign)
        jobs += got
        if not got:
            await asyncio.sleep(0.02)
    return jobs
