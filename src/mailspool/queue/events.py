"""Job events kept beside the jobs: the outbox that webhooks and ``GET /v1/events`` read.

Every job store keeps an :class:`EventLog` (a table, or a stream under the store's
prefix), as it keeps the suppression list and returned mail. An event is written by the
change that causes it, in the same transaction (SQL triggers; the same Lua script in
Redis), so an outcome is never recorded without its event nor an event without its
outcome:

- ``sent``, ``deferred``, ``dead``, ``suppressed``: a leased job's outcome is recorded
  (``suppressed`` also when a job is enqueued suppressed);
- ``ambiguous``: a job's count of possible duplicates grows (an expired lease claimed
  again, or an outcome recorded ambiguous);
- ``bounced``, ``complained``: returned mail is recorded on a job (``permanent`` tells a
  hard bounce from a soft one);
- ``unsubscribed``: an address is added to the suppression list with that reason.

Events are read in commit order by an opaque, increasing ``cursor`` (:meth:`EventLog.read`
``after`` one). Each webhook endpoint keeps its own delivery state here too: its cursor
(how far it has been offered events), a lease so that one dispatcher at a time delivers
to it, and the events that failed (:class:`Pending`: retried with backoff, then dead).

Backends implement the ``_`` hooks; the public methods check their arguments first. The
contract suite is ``tests/queue/test_events_contract.py``.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "Endpoint",
    "Event",
    "EventLog",
    "EventType",
    "MemoryEventLog",
    "Pending",
    "event_id",
]

#: at most this many events or pending rows in one page
MAX_PAGE = 1000
#: a stored reply, diagnostic or error is kept to this many characters
MAX_DETAIL_CHARS = 1000
#: an endpoint's name (mailspool.webhooks names them from their URL)
MAX_NAME_CHARS = 200


class EventType(enum.StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    DEAD = "dead"
    AMBIGUOUS = "ambiguous"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class Event:
    """One event. ``cursor``: its place in the log (opaque; compare only by reading
    ``after`` it). ``job_id``/``campaign`` are empty for an ``unsubscribed`` event that
    names no job. ``recipients``: the job's recipients, or the address concerned.
    ``detail``: the SMTP reply, the bounce's diagnostic, or (``unsubscribed``) the
    mailing list ("" for every list); ``reason``: the dead reason, the bounce's status
    code or the suppression's source; ``permanent``: a hard bounce
    (bounced), else False."""

    cursor: str
    type: EventType
    at: float
    job_id: str = ""
    campaign: str = ""
    recipients: tuple[str, ...] = ()
    detail: str = ""
    reason: str = ""
    attempts: int = 0
    permanent: bool = False

    @property
    def id(self) -> str:
        """The event's id (the ``webhook-id``): the same on every delivery attempt, and
        different for another event even in another store (derived from the job, the
        type, the attempt and the time, not from the cursor alone)."""
        return event_id(self)


def event_id(e: Event) -> str:
    raw = f"{e.cursor}\0{e.type}\0{e.job_id}\0{e.attempts}\0{e.at!r}\0{','.join(e.recipients)}"
    return "evt_" + hashlib.sha256(raw.encode()).hexdigest()[:26]


@dataclass(frozen=True, slots=True)
class Pending:
    """An event an endpoint has not taken yet: due again at ``next_at`` after
    ``attempts`` failures (``first_at``: the first), or ``dead`` (failed for longer
    than the endpoint's retry period). ``error``: the last failure."""

    cursor: str
    attempts: int
    next_at: float
    first_at: float
    error: str = ""
    dead: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint's delivery state: ``cursor`` (None: none yet), the dispatcher that
    holds it (``owner``, until ``lease_until``), and its pending events by kind."""

    name: str
    cursor: str | None
    owner: str = ""
    lease_until: float = 0.0
    retrying: int = 0
    dead: int = 0


def _check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ValueError(f"invalid endpoint name {name[:MAX_NAME_CHARS]!r}")
    return name


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}")
    return limit


def clip(text: str) -> str:
    return text[:MAX_DETAIL_CHARS]


class EventLog(abc.ABC):
    """The events of one store and the delivery state of each webhook endpoint."""

    # -- events -------------------------------------------------------------------------

    async def read(
        self,
        after: str | None = None,
        limit: int = 100,
        types: Sequence[EventType] | None = None,
    ) -> list[Event]:
        """Up to ``limit`` events after the cursor ``after`` (None: from the oldest
        kept), in commit order; ``types``: only those (the cursor of the last event
        returned may then be short of the last event read: use :meth:`head` to skip)."""
        got = await self._read(after, _check_limit(limit))
        if types is not None:
            wanted = set(types)
            got = [e for e in got if e.type in wanted]
        return got

    async def get(self, cursors: Sequence[str]) -> list[Event]:
        """The events at these cursors that are still kept, in commit order."""
        return await self._get(list(dict.fromkeys(cursors))) if cursors else []

    async def head(self) -> str | None:
        """The cursor of the newest event (None: no event kept)."""
        return await self._head()

    async def prune(self, before: float) -> int:
        """Forget events older than ``before`` (Unix time); returns how many. Pending
        rows whose event is gone are dropped too."""
        return await self._prune(before)

    # -- endpoints ----------------------------------------------------------------------

    async def lease(self, name: str, owner: str, seconds: float) -> Endpoint | None:
        """Take or renew the endpoint ``name`` for ``owner`` until now + ``seconds``
        when no other owner holds an unexpired lease; its state, or None when another
        holds it. An endpoint taken for the first time starts at :meth:`head` (it is
        offered the events written from then on, not the whole log)."""
        if not owner or seconds <= 0:
            raise ValueError("lease needs an owner and a positive duration")
        return await self._lease(_check_name(name), owner, time.time() + seconds)

    async def advance(self, name: str, owner: str, cursor: str) -> bool:
        """Move the endpoint's cursor to ``cursor`` while ``owner`` holds it; False
        (nothing changed) when it does not."""
        return await self._advance(_check_name(name), owner, cursor)

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint with delivery state, by name."""
        return await self._endpoints()

    async def put_pending(self, name: str, rows: Sequence[Pending]) -> None:
        """Add or replace pending rows of the endpoint (by cursor)."""
        if rows:
            rows = [replace(r, error=clip(r.error)) for r in rows]
            await self._put_pending(_check_name(name), rows)

    async def due(self, name: str, now: float, limit: int = 100) -> list[Pending]:
        """Pending rows that are not dead and due at ``now``, earliest due first."""
        return await self._due(_check_name(name), now, _check_limit(limit))

    async def drop_pending(self, name: str, cursors: Sequence[str]) -> None:
        """Forget these pending rows (delivered, or purged)."""
        if cursors:
            await self._drop_pending(_check_name(name), list(dict.fromkeys(cursors)))

    async def pending(self, name: str, dead: bool, limit: int = 100) -> list[Pending]:
        """Pending rows that are dead (or retrying), oldest first."""
        return await self._pending(_check_name(name), dead, _check_limit(limit))

    async def revive(self, name: str) -> int:
        """Make the endpoint's dead rows due now, with their attempts and first failure
        reset; returns how many."""
        return await self._revive(_check_name(name), time.time())

    # -- hooks --------------------------------------------------------------------------

    @abc.abstractmethod
    async def _read(self, after: str | None, limit: int) -> list[Event]: ...

    @abc.abstractmethod
    async def _get(self, cursors: list[str]) -> list[Event]: ...

    @abc.abstractmethod
    async def _head(self) -> str | None: ...

    @abc.abstractmethod
    async def _prune(self, before: float) -> int: ...

    @abc.abstractmethod
    async def _lease(self, name: str, owner: str, until: float) -> Endpoint | None: ...

    @abc.abstractmethod
    async def _advance(self, name: str, owner: str, cursor: str) -> bool: ...

    @abc.abstractmethod
    async def _endpoints(self) -> list[Endpoint]: ...

    @abc.abstractmethod
    async def _put_pending(self, name: str, rows: Sequence[Pending]) -> None: ...

    @abc.abstractmethod
    async def _due(self, name: str, now: float, limit: int) -> list[Pending]: ...

    @abc.abstractmethod
    async def _drop_pending(self, name: str, cursors: list[str]) -> None: ...

    @abc.abstractmethod
    async def _pending(self, name: str, dead: bool, limit: int) -> list[Pending]: ...

    @abc.abstractmethod
    async def _revive(self, name: str, now: float) -> int: ...


class MemoryEventLog(EventLog):
    """Events in this process's memory, for the in-memory queue, which calls
    :meth:`append` where a durable store writes its event in the same transaction."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._seq = 0
        self._endpoints_: dict[str, Endpoint] = {}
        self._pending_: dict[str, dict[str, Pending]] = {}

    def append(
        self,
        type_: EventType,
        *,
        at: float,
        job_id: str = "",
        campaign: str = "",
        recipients: tuple[str, ...] = (),
        detail: str = "",
        reason: str = "",
        attempts: int = 0,
        permanent: bool = False,
    ) -> None:
        self._seq += 1
        self._events.append(
            Event(
                f"{self._seq:020d}",
                type_,
                at,
                job_id,
                campaign,
                recipients,
                clip(detail),
                reason,
                attempts,
                permanent,
            )
        )

    async def _read(self, after: str | None, limit: int) -> list[Event]:
        return [e for e in self._events if after is None or e.cursor > after][:limit]

    async def _get(self, cursors: list[str]) -> list[Event]:
        wanted = set(cursors)
        return [e for e in self._events if e.cursor in wanted]

    async def _head(self) -> str | None:
        return self._events[-1].cursor if self._events else None

    async def _prune(self, before: float) -> int:
        kept = [e for e in self._events if e.at >= before]
        n = len(self._events) - len(kept)
        self._events = kept
        alive = {e.cursor for e in kept}
        for rows in self._pending_.values():
            for c in [c for c in rows if c not in alive]:
                del rows[c]
        return n

    async def _lease(self, name: str, owner: str, until: float) -> Endpoint | None:
        now = time.time()
        old = self._endpoints_.get(name)
        if old is None:
            old = Endpoint(name, await self._head())
        elif old.owner and old.owner != owner and old.lease_until > now:
            return None
        self._endpoints_[name] = replace(old, owner=owner, lease_until=until)
        return self._with_counts(self._endpoints_[name])

    def _with_counts(self, ep: Endpoint) -> Endpoint:
        rows = self._pending_.get(ep.name, {}).values()
        dead = sum(1 for r in rows if r.dead)
        return replace(ep, retrying=len(rows) - dead, dead=dead)

    async def _advance(self, name: str, owner: str, cursor: str) -> bool:
        ep = self._endpoints_.get(name)
        if ep is None or ep.owner != owner or ep.lease_until <= time.time():
            return False
        self._endpoints_[name] = replace(ep, cursor=cursor)
        return True

    async def _endpoints(self) -> list[Endpoint]:
        return [self._with_counts(self._endpoints_[n]) for n in sorted(self._endpoints_)]

    async def _put_pending(self, name: str, rows: Sequence[Pending]) -> None:
        mine = self._pending_.setdefault(name, {})
        for r in rows:
            mine[r.cursor] = r

    async def _due(self, name: str, now: float, limit: int) -> list[Pending]:
        rows = self._pending_.get(name, {}).values()
        due = sorted((r for r in rows if not r.dead and r.next_at <= now), key=_by_due)
        return due[:limit]

    async def _drop_pending(self, name: str, cursors: list[str]) -> None:
        mine = self._pending_.get(name, {})
        for c in cursors:
            mine.pop(c, None)

    async def _pending(self, name: str, dead: bool, limit: int) -> list[Pending]:
        rows = self._pending_.get(name, {}).values()
        return sorted((r for r in rows if r.dead == dead), key=lambda r: r.cursor)[:limit]

    async def _revive(self, name: str, now: float) -> int:
        mine = self._pending_.get(name, {})
        dead = [r for r in mine.values() if r.dead]
        for r in dead:
            mine[r.cursor] = Pending(r.cursor, 0, now, now)
        return len(dead)


def _by_due(r: Pending) -> tuple[float, str]:
    return (r.next_at, r.cursor)
