"""Returned mail kept beside the jobs: bounces and complaints recorded on the jobs they
are about, and the returned messages that matched no job.

A :class:`ReturnLog` is kept by every job store (a table, or keys under the store's
prefix), as the suppression list is. It holds:

- **events**: one :class:`ReturnEvent` per returned message and recipient, on the job
  the message was about. An event is keyed (``key``) by a digest of the returned
  message and the recipient (:func:`event_key`), so the same bounce processed twice is
  recorded once. Recording changes nothing else about the job: its state stays what it
  was (``sent``), so the counts of the run that sent it stay true.
- **counts** per campaign (:class:`ReturnCounts`): recipients of its jobs that bounced
  for good (``bounced``), bounced only for now (``soft_bounced``) or complained
  (``complained``); each (job, recipient) is counted once per kind, however many
  reports say so.
- the **latest event** of a job (its diagnostic), for ``GET /v1/messages/{id}``.
- the soft bounces of an address since a time, across every job (the window of
  ``mailspool.inbound.handle``).
- **unmatched** messages (:class:`Unmatched`): a returned message that named no job,
  kept by its digest with its first :data:`MAX_UNMATCHED_BYTES` bytes, never dropped.
- **jobs by Message-ID** (:meth:`ReturnLog.find_by_message_id`): the job whose message
  carries that Message-ID. mailspool writes ``<JOB_ID@DOMAIN>``, so the job is looked up
  by the id the Message-ID names, then its own Message-ID compared: no index, nothing
  written at enqueue.

Backends implement the ``_`` hooks; the public methods check and normalise their
arguments first. The contract suite is ``tests/queue/test_returns_contract.py``.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mailspool.message.optout import lookup_key
from mailspool.models import Job
from mailspool.queue.events import EventType, MemoryEventLog

__all__ = [
    "MAX_DIAGNOSTIC_CHARS",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_UNMATCHED_BYTES",
    "MemoryReturnLog",
    "ReturnCounts",
    "ReturnEvent",
    "ReturnKind",
    "ReturnLog",
    "Unmatched",
    "clean_text",
    "event_key",
]

#: a diagnostic is kept to this many characters
MAX_DIAGNOSTIC_CHARS = 1000
#: an unmatched message's reason and envelope recipient are kept to this many characters
MAX_NOTE_CHARS = 500
#: a Message-ID longer than this is no Message-ID mailspool wrote (a header line is 998)
MAX_MESSAGE_ID_CHARS = 998
#: the Message-IDs mailspool writes: ``<JOB_ID@DOMAIN>`` (intake/builder.py)
_OURS = re.compile(r"<([0-9a-fA-F]{32})@[^<>@\s]+>")
#: an unmatched message is kept to its first 256 KiB (a bounce quotes headers, or the
#: start of the message: what is needed to read it again by hand)
MAX_UNMATCHED_BYTES = 256 * 1024
#: at most this many unmatched messages in one page
MAX_PAGE = 1000


class ReturnKind(enum.StrEnum):
    BOUNCED = "bounced"
    COMPLAINED = "complained"


def clean_text(text: str, limit: int) -> str:
    """``text`` safe to store and show: every character that does not print (controls,
    NUL, escapes, line breaks, bidirectional overrides, unassigned code points) as a
    space, runs of blanks as one, stripped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else " " for c in text)
    out = " ".join(out.split())
    # a lone surrogate cannot be stored as UTF-8 (PostgreSQL, Redis): replaced
    out = out.encode("utf-8", "replace").decode("utf-8")
    return out[:limit]


def event_key(message_digest: str, address: str) -> str:
    """The key of the event a returned message (its SHA-256, hex) records for ``address``."""
    return hashlib.sha256(f"{message_digest}\0{address}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ReturnEvent:
    """A bounce or complaint about one recipient of a job. ``status`` is the enhanced
    status code (``5.1.1``) when known; ``permanent`` is False for a temporary failure
    (4.x.x, delayed) and for a ``not-spam`` feedback report; ``diagnostic`` is the
    remote server's text (or the feedback type), cleaned and truncated when recorded;
    ``at`` is when it was received (Unix seconds); ``key`` its :func:`event_key`."""

    key: str
    kind: ReturnKind
    address: str
    permanent: bool
    at: float
    status: str | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class ReturnCounts:
    """Recipients of a campaign's jobs (or every campaign's) that bounced for good,
    bounced for now, or complained: each (job, recipient) counted once per kind."""

    bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A returned message that named no job, kept. ``digest`` is the SHA-256 (hex) of
    the whole message, ``size`` its length; ``data`` its first
    :data:`MAX_UNMATCHED_BYTES` bytes; ``envelope_to`` the address it was delivered to
    (when known); ``reason`` why it matched nothing."""

    digest: str
    reason: str
    received_at: float
    size: int
    data: bytes
    envelope_to: str = ""

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.size


def _check_time(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a time in seconds since 1970, not {value!r}")
    return float(value)


def _check_digest(value: str, what: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{what} must be a SHA-256 in lower-case hex")
    return value


def normalized_event(event: ReturnEvent) -> ReturnEvent:
    """``event`` checked, its address lower-cased as the suppression list keys it, its
    texts cleaned; ValueError naming what is wrong."""
    address = lookup_key(event.address)
    if address is None:
        raise ValueError(f"not an address: {event.address[:300]!r}")
    status = None if event.status is None else clean_text(event.status, 20) or None
    return replace(
        event,
        key=_check_digest(event.key, "key"),
        kind=ReturnKind(event.kind),
        address=address,
        permanent=bool(event.permanent),
        at=_check_time(event.at, "at"),
        status=status,
        diagnostic=clean_text(event.diagnostic, MAX_DIAGNOSTIC_CHARS),
    )


class ReturnLog(abc.ABC):
    """Returned mail kept by one job store (see the module docstring)."""

    async def find_by_message_id(self, message_id: str) -> str | None:
        """The id of the job whose message carries ``message_id`` (as mailspool writes
        it, with its angle brackets; compared exactly), or None."""
        mid = message_id.strip()
        if not mid or len(mid) > MAX_MESSAGE_ID_CHARS or not mid.isprintable():
            return None
        ours = _OURS.fullmatch(mid)
        if ours is None:  # not a Message-ID mailspool wrote
            return None
        return await self._find(ours.group(1).lower(), mid)

    async def record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        """Record ``event`` on job ``job_id`` of ``campaign``; False, and nothing
        changed, when an event with its key is recorded already. The job's state is not
        touched."""
        return await self._record(job_id, campaign, normalized_event(event))

    async def counts(self, campaign: str | None = None) -> ReturnCounts:
        """The counts of ``campaign``, or of every campaign."""
        return await self._counts(campaign)

    async def latest(self, job_id: str) -> ReturnEvent | None:
        """The job's event received last (the last recorded of those received at the
        same time), or None."""
        return await self._latest(job_id)

    async def soft_bounces(self, address: str, since: float) -> int:
        """Temporary bounces recorded for ``address`` (on any job) received at or after
        ``since``."""
        key = lookup_key(address)
        return 0 if key is None else await self._soft(key, _check_time(since, "since"))

    async def keep_unmatched(self, item: Unmatched) -> bool:
        """Keep a returned message that matched nothing (its data cut to
        :data:`MAX_UNMATCHED_BYTES`); False when one with its digest is kept already."""
        if item.size < len(item.data):
            raise ValueError("size is less than the data given")
        kept = replace(
            item,
            digest=_check_digest(item.digest, "digest"),
            reason=clean_text(item.reason, MAX_NOTE_CHARS),
            envelope_to=clean_text(item.envelope_to, MAX_NOTE_CHARS),
            received_at=_check_time(item.received_at, "received_at"),
            data=bytes(item.data[:MAX_UNMATCHED_BYTES]),
        )
        return await self._keep(kept)

    async def unmatched_count(self) -> int:
        """How many unmatched messages are kept."""
        return await self._unmatched_count()

    async def unmatched(self, limit: int = 100) -> list[Unmatched]:
        """Up to ``limit`` unmatched messages, received first first."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        return await self._unmatched(limit)

    # -- backend hooks: arguments checked and normalised --------------------------------

    @abc.abstractmethod
    async def _find(self, job_id: str, message_id: str) -> str | None:
        """``job_id`` when that job exists and its Message-ID is ``message_id`` (compared
        without case: a domain may come back in another case), else None."""

    @abc.abstractmethod
    async def _record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        """Store the event unless its key is stored (atomically); whether it was new."""

    @abc.abstractmethod
    async def _counts(self, campaign: str | None) -> ReturnCounts:
        """Distinct (job, address) per kind: bounced permanent, bounced temporary,
        complained."""

    @abc.abstractmethod
    async def _latest(self, job_id: str) -> ReturnEvent | None:
        """The event of the job with the greatest ``at``, the last stored on a tie."""

    @abc.abstractmethod
    async def _soft(self, address: str, since: float) -> int:
        """Events of kind bounced, not permanent, for ``address``, with ``at >= since``."""

    @abc.abstractmethod
    async def _keep(self, item: Unmatched) -> bool:
        """Store ``item`` unless its digest is stored; whether it was new."""

    @abc.abstractmethod
    async def _unmatched_count(self) -> int: ...

    @abc.abstractmethod
    async def _unmatched(self, limit: int) -> list[Unmatched]:
        """The first ``limit`` by ``received_at``, then digest."""


def count_kind(event: ReturnEvent) -> str:
    """Which count of :class:`ReturnCounts` an event adds to."""
    if event.kind is ReturnKind.COMPLAINED:
        return "complained"
    return "bounced" if event.permanent else "soft_bounced"


class MemoryReturnLog(ReturnLog):
    """Returned mail in this process's memory, for the in-memory queue. ``jobs``: the
    queue's own jobs, by id."""

    def __init__(self, jobs: Mapping[str, Job], events: MemoryEventLog | None = None) -> None:
        self._jobs = jobs
        self._log = events
        self._events: dict[str, tuple[str, str, ReturnEvent]] = {}
        self._kept: dict[str, Unmatched] = {}

    async def _find(self, job_id: str, message_id: str) -> str | None:
        job = self._jobs.get(job_id)
        found = job is not None and job.message_id.lower() == message_id.lower()
        return job_id if found else None

    async def _record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        if event.key in self._events:
            return False
        self._events[event.key] = (job_id, campaign, event)
        if self._log is not None:
            job = self._jobs.get(job_id)
            self._log.append(
                EventType(event.kind.value), at=event.at, job_id=job_id, campaign=campaign,
                recipients=(event.address,), detail=event.diagnostic,
                reason=event.status or "", attempts=job.attempts if job else 0,
                permanent=event.permanent,
            )  # fmt: skip
        return True

    async def _counts(self, campaign: str | None) -> ReturnCounts:
        seen = {
            (job_id, e.address, count_kind(e))
            for job_id, c, e in self._events.values()
            if campaign is None or c == campaign
        }
        kinds = [k for _, _, k in seen]
        return ReturnCounts(
            kinds.count("bounced"), kinds.count("soft_bounced"), kinds.count("complained")
        )

    async def _latest(self, job_id: str) -> ReturnEvent | None:
        out: ReturnEvent | None = None
        for jid, _, e in self._events.values():  # in the order stored
            if jid == job_id and (out is None or e.at >= out.at):
                out = e
        return out

    async def _soft(self, address: str, since: float) -> int:
        return sum(
            1
            for _, _, e in self._events.values()
            if e.address == address
            and e.kind is ReturnKind.BOUNCED
            and not e.permanent
            and e.at >= since
        )

    async def _keep(self, item: Unmatched) -> bool:
        if item.digest in self._kept:
            return False
        self._kept[item.digest] = item
        return True

    async def _unmatched_count(self) -> int:
        return len(self._kept)

    async def _unmatched(self, limit: int) -> list[Unmatched]:
        items = sorted(self._kept.values(), key=lambda u: (u.received_at, u.digest))
        return items[:limit]
