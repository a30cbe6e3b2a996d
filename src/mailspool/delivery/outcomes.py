"""Outcomes the worker records that are decided without the worker's state."""

from __future__ import annotations

import dataclasses
import time

from mailspool.delivery.classify import Action, classify
from mailspool.errors import ReplyError, Stage
from mailspool.models import Job, Outcome, State, job_id
from mailspool.transport.base import Delivery


def interrupted(job: Job) -> Outcome:
    """A send cut off by shutdown: the relay may have taken it, so it is recorded as an
    ambiguous attempt, due again at once, rather than handed back as never tried."""
    reply = "interrupted at shutdown during the SMTP transaction"
    return Outcome(job.id, State.DEFERRED, reply, time.time(), ambiguous=True)


def transient(reply: str) -> bool:
    """A refused recipient's reply ("451 4.2.1 ...") worth trying again."""
    code = int(reply[:3]) if reply[:3].isdigit() else 0
    return classify(ReplyError(reply[4:], code=code, stage=Stage.RCPT)).action is not Action.DEAD


def sent_reply(d: Delivery) -> str:
    if not d.refused:
        return d.reply
    refused = "; ".join(f"{r}: {why}" for r, why in d.refused.items())
    return f"{d.reply} | refused: {refused}"[:1000]


def refused_retry(job: Job, recipients: list[str], not_before: float) -> Job:
    """A job of its own for recipients refused with a temporary reply: the same message
    (same Message-ID), keyed so that retrying it twice queues it once."""
    key = f"{job.key}|retry:{','.join(recipients)}"
    return dataclasses.replace(
        job,
        id=job_id(job.campaign, key),
        key=key,
        recipients=tuple(recipients),
        state=State.QUEUED,
        attempts=0,
        not_before=not_before,
        lease_owner="",
        last_reply="",
    )
