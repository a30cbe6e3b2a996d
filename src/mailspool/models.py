"""Plain data shared by every layer."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field


def job_id(campaign: str, key: str) -> str:
    """A job's id: fixed by its campaign and idempotency key, on every backend."""
    return hashlib.blake2b(f"{campaign}\0{key}".encode(), digest_size=16).hexdigest()


class State(enum.StrEnum):
    """Where a job is in its life (docs/concepts.md "States"): waiting for a worker, due
    now (queued), leased by a worker (sending), held back until ``not_before`` for a
    retry, a send window or a paused relay (deferred), or final (sent, dead,
    suppressed: every recipient was on the suppression list, at enqueue or just before
    sending, or cancelled: its campaign was cancelled before it was sent). The first
    three are pending (``PENDING_STATES``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    DEAD = "dead"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


PENDING_STATES = (State.QUEUED, State.SENDING, State.DEFERRED)
#: a campaign name, on every face (--campaign, the HTTP API): it names files (rejects,
#: outbox) and keys in every backend
CAMPAIGN_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"


class CampaignState(enum.StrEnum):
    """Whether a campaign's jobs may be sent (``mailspool campaign``): ``active`` (the
    default), ``paused`` (claimed by no worker until resumed; messages in flight finish)
    or ``cancelled`` (final: its queued and deferred jobs end ``cancelled``, and a worker
    that meets one of its jobs records it so instead of sending it)."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class CampaignChange:
    """What a change of a campaign's state did: the state it is in now (a cancelled
    campaign stays cancelled, whatever was asked), and how many of its jobs the change
    ended ``cancelled``."""

    state: CampaignState
    cancelled: int = 0


class DeadReason(enum.StrEnum):
    """Why a job was dead-lettered (``dlq list --reason``)."""

    REJECTED_PERMANENT = "rejected_permanent"
    EXPIRED = "expired"
    RENDER_ERROR = "render_error"
    INVALID_MESSAGE = "invalid_message"
    TOO_LARGE = "too_large"
    MAX_ATTEMPTS = "max_attempts"


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """An attachment stored once per campaign in the blob store, referenced by digest."""

    digest: str
    filename: str
    content_type: str


def attachment_rows(refs: tuple[AttachmentRef, ...]) -> list[list[str]]:
    """How the queues store a job's attachment references: a list per reference."""
    return [[r.digest, r.filename, r.content_type] for r in refs]


def attachments_from_rows(rows: list[list[str]]) -> tuple[AttachmentRef, ...]:
    return tuple(AttachmentRef(*a) for a in rows)


def attachments_json(refs: tuple[AttachmentRef, ...]) -> str | None:
    """The rows as JSON, or None for none."""
    return json.dumps(attachment_rows(refs)) if refs else None


def attachments_from_json(text: str | None) -> tuple[AttachmentRef, ...]:
    return attachments_from_rows(json.loads(text)) if text else ()


@dataclass(slots=True)
class Job:
    """One message to one set of recipients, self-contained for any worker.

    ``message`` is the complete RFC 5322 message (CRLF line endings) except attachments;
    when there are attachments, ``body_offset`` is where the top-level headers end and
    the body entity starts, so the worker can wrap it in multipart/mixed.
    """

    id: str
    campaign: str
    key: str
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    message: bytes
    row: int = 0
    body_offset: int = 0
    attachments: tuple[AttachmentRef, ...] = ()
    state: State = State.QUEUED
    attempts: int = 0
    not_before: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    last_reply: str = ""
    dead_reason: str = ""
    # set by a claim; a worker records outcomes only for leases it still holds
    lease_owner: str = ""
    # why the stored message could not be read (a damaged store): the worker records the
    # job dead instead of sending it
    unreadable: str = ""
    #: the mailing list the job was sent for ("" is the default list): its recipients
    #: are checked against that list's suppressions and the global ones
    list_name: str = ""
    #: the recipient's timezone for the campaign's send windows ("": the campaign's own)
    timezone: str = ""

    @property
    def domain(self) -> str:
        return self.recipients[0].rpartition("@")[2].lower() if self.recipients else ""


class Enqueued(enum.Enum):
    """What happened to one job offered to the queue."""

    NEW = "new"
    PENDING = "pending"  # the same row was queued by an earlier run and is not final yet
    SENT = "sent"  # already sent by an earlier run
    DEAD = "dead"  # dead-lettered by an earlier run
    DUPLICATE = "duplicate"  # another row of this campaign has the same key
    #: stored final as suppressed: offered so (every recipient on the suppression list;
    #: added by this call) or so by an earlier run (never sent, whatever was offered now)
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"  # its campaign was cancelled before it was sent


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, recorded by the worker."""

    job_id: str
    state: State  # SENT, DEFERRED, DEAD, SUPPRESSED or CANCELLED
    reply: str = ""
    not_before: float = 0.0
    reason: str = ""
    ambiguous: bool = False


@dataclass(slots=True)
class CampaignStats:
    """A campaign's jobs counted by state (``counts``: state value -> jobs), or every
    campaign's when ``campaign`` is None; ``next_due`` is when the earliest pending job
    is due (None: nothing pending)."""

    campaign: str | None
    counts: dict[str, int] = field(default_factory=dict)
    ambiguous: int = 0
    next_due: float | None = None
    # the reply of the most recently deferred job, e.g. an authentication failure
    last_error: str = ""

    def get(self, state: State) -> int:
        return self.counts.get(state.value, 0)

    @property
    def pending(self) -> int:
        return sum(self.get(s) for s in PENDING_STATES)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
