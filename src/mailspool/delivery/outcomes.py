"""Outcomes the worker records that are decided without the worker's state."""

from __future__ import annotations

import dataclasses
import time

from mailspool.delivery.classify import Action, classify
from mailspool.delivery.retry import CampaignPolicies
from mailspool.delivery.worker_config import ClaimingSuppressing
from mailspool.errors import QueueError, ReplyError, Stage
from mailspool.models import DeadReason, Job, Outcome, State, job_id
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


async def retry_refused(
    queue: ClaimingSuppressing, policies: CampaignPolicies, job: Job, delivery: Delivery
) -> str:
    """Recipients refused with a temporary reply get the same message (same Message-ID)
    later, as a job of their own; permanent refusals stay recorded in the reply. Returns
    a note for the reply."""
    later = sorted(r for r, why in delivery.refused.items() if transient(why))
    if not later:
        return ""
    decision = policies.next_attempt(job)
    if isinstance(decision, DeadReason):
        return f" | not retried ({decision.value}): {', '.join(later)}"
    child = refused_retry(job, later, decision)
    try:
        await queue.enqueue([child])
    except QueueError as exc:
        return f" | could not queue a retry for {', '.join(later)}: {exc}"
    return f" | retrying {', '.join(later)} as job {child.id}"


async def sent_outcome(
    queue: ClaimingSuppressing,
    policies: CampaignPolicies,
    job: Job,
    delivery: Delivery,
    dropped: list[str] | None,
) -> Outcome:
    """The outcome of a message the relay took: its reply, a retry queued for recipients
    refused for now, and the recipients the suppression list ``dropped``."""
    reply = sent_reply(delivery)
    if delivery.refused:
        reply += await retry_refused(queue, policies, job, delivery)
    if dropped:
        reply += f" | suppressed: {', '.join(dropped)}"
    return Outcome(job.id, State.SENT, reply[:1000])
