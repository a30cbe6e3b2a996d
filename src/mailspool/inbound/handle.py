"""What a returned message does: to the job it is about, and to the suppression list.

:func:`handle` takes a parsed :class:`~mailspool.inbound.report.Report` and the bytes it
was parsed from, and:

1. **finds the job**: by the VERP return path the report was delivered to
   (``report.envelope_to``, read with the return-path secrets), else by the Message-ID
   of the original message (``report.message_id``). A token that does not verify (forged,
   altered, another secret) is no token: the Message-ID is tried next. When both name a
   job, the signed token wins.
2. **records** a bounce or complaint on the job, once per returned message and
   recipient (keyed by the digest of the bytes and the address): processing the same
   message twice records it once. The job's state stays what it was (``sent``).
3. **suppresses** globally: a permanent bounce (5.x.x) with reason ``bounced``, a
   complaint with reason ``complained``; a temporary bounce (4.x.x, delayed) is counted,
   and suppresses with reason ``bounced`` once the address has ``limit`` of them within
   ``window`` (:class:`SoftBouncePolicy`). An unsubscribe request suppresses the address
   for the job's list (globally when no job is found).
4. **keeps** a message that names no job, or a recipient the job never mailed, in the
   store's unmatched messages (its first 256 KiB, counted), never dropped. An address
   the job did not mail is neither recorded on it nor suppressed: anyone may put any
   Message-ID in a message, and a job's recipients are what it may speak for.

A feedback report whose recipient is redacted (no address found) is about the job's
recipient when the job has exactly one.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Protocol

from mailspool.inbound.report import Bounced, Kind, Report
from mailspool.message.optout import lookup_key
from mailspool.message.verp import ReturnPath
from mailspool.models import Job
from mailspool.queue import Inspection, Returning, Suppressing
from mailspool.queue.returns import (
    MAX_UNMATCHED_BYTES,
    ReturnEvent,
    ReturnKind,
    Unmatched,
    event_key,
)
from mailspool.queue.suppression import MAX_SOURCE_CHARS, Reason, Suppression

__all__ = ["Action", "Handled", "SoftBouncePolicy", "Store", "handle"]

DAY = 86_400.0


class Action(enum.StrEnum):
    SUPPRESSED = "suppressed"  # the address is on the suppression list now
    COUNTED = "counted"  # recorded on the job, nothing suppressed (yet)
    UNMATCHED = "unmatched"  # no job: the message is kept with the unmatched ones


@dataclass(frozen=True, slots=True)
class Handled:
    """What was done for one recipient of a report (``address`` None: a report naming
    none). ``job`` is the job it was recorded on; ``recorded`` False when that event was
    recorded already (the same message handled again; for ``unmatched``, when the message
    is kept already; always False for an unsubscribe request); ``reason`` says why, for
    ``unmatched``."""

    address: str | None
    job: str | None
    action: Action
    recorded: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SoftBouncePolicy:
    """A temporary bounce suppresses its address once it has ``limit`` of them (this
    one included) received within ``window`` seconds."""

    limit: int = 3
    window: float = 7 * DAY

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window > 0:
            raise ValueError("the soft-bounce limit must be at least 1 and the window positive")


class Store(Inspection, Returning, Suppressing, Protocol):
    """What :func:`handle` uses of a queue or job store."""


async def _job(report: Report, store: Store, return_path: ReturnPath | None) -> Job | None:
    if return_path is not None and report.envelope_to:
        job_id = return_path.read(report.envelope_to)
        job = None if job_id is None else await store.get(job_id)
        if job is not None:
            return job
    if report.message_id:
        job_id = await store.returns.find_by_message_id(report.message_id)
        if job_id is not None:
            return await store.get(job_id)
    return None


def _source(what: str, campaign: str) -> str:
    return f"{what}:{campaign}"[:MAX_SOURCE_CHARS]


async def _rule(
    store: Store, job: Job, event: ReturnEvent, policy: SoftBouncePolicy
) -> tuple[Reason, str] | None:
    """The suppression an event makes, with its source, or None (only counted)."""
    if event.kind is ReturnKind.COMPLAINED:
        return (Reason.COMPLAINED, _source("complaint", job.campaign)) if event.permanent else None
    if event.permanent:
        return Reason.BOUNCED, _source("bounce", job.campaign)
    soft = await store.returns.soft_bounces(event.address, event.at - policy.window)
    if soft >= policy.limit:
        return Reason.BOUNCED, _source(f"soft-bounces-{soft}", job.campaign)
    return None


async def _record(store: Store, job: Job, event: ReturnEvent, policy: SoftBouncePolicy) -> Handled:
    recorded = await store.returns.record(job.id, job.campaign, event)
    rule = await _rule(store, job, event, policy)
    if rule is None:
        return Handled(event.address, job.id, Action.COUNTED, recorded)
    reason, source = rule
    await store.suppressions.add([Suppression(event.address, None, reason, source, event.at)])
    return Handled(event.address, job.id, Action.SUPPRESSED, recorded)


async def _unsubscribe(report: Report, job: Job | None, store: Store, now: float) -> list[Handled]:
    list_name = (job.list_name or None) if job is not None else None
    await store.suppressions.add(
        Suppression(b.address, list_name, Reason.UNSUBSCRIBED, "mail", now)
        for b in report.recipients
    )
    jid = None if job is None else job.id
    return [Handled(b.address, jid, Action.SUPPRESSED) for b in report.recipients]


async def handle(
    report: Report,
    raw: bytes,
    *,
    store: Store,
    return_path: ReturnPath | None,
    now: float,
    policy: SoftBouncePolicy = SoftBouncePolicy(),
) -> list[Handled]:
    """Apply ``report`` (parsed from ``raw``) to the jobs and the suppression list (see
    the module docstring): one :class:`Handled` per recipient it names."""
    digest = hashlib.sha256(raw).hexdigest()
    job = await _job(report, store, return_path)

    async def unmatched(reason: str, addresses: list[str | None]) -> list[Handled]:
        kept = await store.returns.keep_unmatched(
            Unmatched(
                digest=digest, reason=reason, received_at=now, size=len(raw),
                data=raw[:MAX_UNMATCHED_BYTES], envelope_to=report.envelope_to or "",
            )
        )  # fmt: skip
        return [Handled(a, None, Action.UNMATCHED, kept, reason) for a in addresses]

    if report.kind is Kind.UNSUBSCRIBE:
        return await _unsubscribe(report, job, store, now)
    addresses: list[str | None] = [b.address for b in report.recipients] or [None]
    if report.kind is Kind.UNKNOWN:
        return await unmatched(f"not recognised: {report.reason or 'unknown'}", addresses)
    if job is None:
        return await unmatched("names no job (return path or Message-ID)", addresses)

    complaint = report.kind is Kind.ARF
    recipients = report.recipients
    if complaint and not recipients and len(job.recipients) == 1:
        permanent = report.feedback_type != "not-spam"
        recipients = [Bounced(job.recipients[0], None, permanent)]
    if not recipients:
        return await unmatched(f"names no recipient of job {job.id}", [None])

    mailed = {lookup_key(r) for r in job.recipients}
    out: list[Handled] = []
    for b in recipients:
        address = lookup_key(b.address)
        if address is None or address not in mailed:
            out += await unmatched(f"{b.address} is not a recipient of job {job.id}", [b.address])
            continue
        diagnostic = b.diagnostic or (report.feedback_type if complaint else b.action) or ""
        event = ReturnEvent(
            key=event_key(digest, address),
            kind=ReturnKind.COMPLAINED if complaint else ReturnKind.BOUNCED,
            address=address, permanent=b.permanent, at=now, status=b.status,
            diagnostic=diagnostic,
        )  # fmt: skip
        out.append(await _record(store, job, event, policy))
    return out
