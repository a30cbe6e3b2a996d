"""The suppression list: who must not be mailed again, kept in each backend's job store.

An entry names an address (``ann@example.com``) or a whole domain (``@example.com``,
exactly that domain, not its subdomains), for one list or, with ``list_name`` None, for
every list (global). It has a :class:`Reason`, a free-text source (``api``, ``import``,
``unsubscribe:CAMPAIGN``...), the time it was made and an optional expiry.

Comparison. Addresses and domains are stored and compared by their key
(:mod:`mailspool.message.optout`, the same function the unsubscribe tokens and the CLI
use): the domain is case-insensitive and IDNA-normalised (``Ann@Bücher.example`` is
``ann@xn--bcher-kva.example``), and **the local part is case-insensitive by default**
(``Ann@`` is ``ann@``); ``mailspool.message.optout.LOCAL_PART_CASE_SENSITIVE`` turns
that off for a deployment that needs it.

Matching. An address is suppressed for a list at a time ``now`` when an entry for its
address or its domain, for that list or global, has not expired (``expires_at`` None or
later than ``now``).

Adding again. There is at most one entry per (key, list). Adding one that exists keeps
whichever lasts longer: no expiry beats any expiry, a later expiry beats an earlier one,
and on a tie the entry already there stays (its reason, source and time: an unsubscribe
posted twice keeps the time of the first). So a bounce that suppresses for 30 days
never shortens an unsubscribe, which is for ever; to shorten or change an entry, remove
it and add it again.

Backends. :class:`SuppressionList` validates and normalises every input, so a backend
only stores: it implements the five ``_`` hooks below, and the shared contract suite
(``tests/queue/test_suppression_contract.py``) runs against it. The batch check
(:meth:`SuppressionList.suppressed`) hands the backend one set of keys (each address's
and each domain's) for one query: in SQL ``address IN (...) AND list IN ('', ?) AND
(expires_at IS NULL OR expires_at > ?)`` on the primary key ``(address, list)``; in
Redis one read of the list's and the global entries for those keys.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from mailspool.message.optout import (
    check_list_name,
    domain_key,
    entry_key,
    is_domain_key,
    lookup_key,
)
from mailspool.queue.events import EventType, MemoryEventLog

__all__ = [
    "ALL_LISTS",
    "MAX_PAGE",
    "MAX_SOURCE_CHARS",
    "MemorySuppressionList",
    "Reason",
    "Scope",
    "Suppression",
    "SuppressionList",
    "merge",
    "normalized",
]

MAX_SOURCE_CHARS = 200
MAX_PAGE = 10_000


class Reason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MANUAL = "manual"


class Scope(enum.Enum):
    """The ``list_name`` filter of :meth:`SuppressionList.entries` that takes every list
    and the global entries (None takes the global entries only)."""

    ALL = "all"


ALL_LISTS = Scope.ALL


@dataclass(frozen=True, slots=True)
class Suppression:
    """One entry. ``address`` is a key: an address or ``@domain`` (normalised when
    added); ``list_name`` None is global; times are Unix seconds."""

    address: str
    list_name: str | None
    reason: Reason
    source: str
    created_at: float
    expires_at: float | None = None

    @property
    def is_domain(self) -> bool:
        return is_domain_key(self.address)

    @property
    def position(self) -> tuple[str, str]:
        """Where it sorts in :meth:`SuppressionList.entries`, and the cursor ``after``
        that continues after it: (address, list name or "" for global)."""
        return (self.address, self.list_name or "")

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def outlasts(self, other: Suppression) -> bool:
        """Whether this entry lasts strictly longer than ``other`` (see "Adding again")."""
        if other.expires_at is None:
            return False
        return self.expires_at is None or self.expires_at > other.expires_at


def merge(old: Suppression, new: Suppression) -> Suppression:
    """The entry kept when ``new`` is added where ``old`` is (same key and list)."""
    return new if new.outlasts(old) else old


def _time(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a time in seconds since 1970, not {value!r}")
    return float(value)


def normalized(entry: Suppression) -> Suppression:
    """``entry`` with its address as a key and every field checked; ValueError naming
    what is wrong (an invalid address or domain, list name, reason, source or time)."""
    try:
        key = entry_key(entry.address)
    except ValueError as exc:
        raise ValueError(f"invalid address or domain {entry.address[:300]!r}: {exc}") from None
    list_name = None if entry.list_name is None else check_list_name(entry.list_name)
    try:
        reason = Reason(entry.reason)
    except ValueError:
        choices = ", ".join(Reason)
        raise ValueError(f"unknown reason {entry.reason!r}: one of {choices}") from None
    if len(entry.source) > MAX_SOURCE_CHARS:
        raise ValueError(f"source longer than {MAX_SOURCE_CHARS} characters")
    created = _time(entry.created_at, "created_at")
    expires = None if entry.expires_at is None else _time(entry.expires_at, "expires_at")
    if expires is not None and expires <= created:
        raise ValueError("expires_at must be later than created_at")
    return replace(
        entry,
        address=key,
        list_name=list_name,
        reason=reason,
        created_at=created,
        expires_at=expires,
    )


def _list_filter(list_name: str | Scope | None) -> str | Scope | None:
    return (
        list_name
        if list_name is None or isinstance(list_name, Scope)
        else check_list_name(list_name)
    )


class SuppressionList(abc.ABC):
    """The suppression list of one job store (see the module docstring). Every public
    method checks and normalises its arguments, then calls one backend hook."""

    async def add(self, entries: Iterable[Suppression]) -> list[Suppression]:
        """Add entries (or keep those there that last longer); returns them normalised,
        one per (key, list). ValueError, and nothing added, when any is invalid."""
        merged: dict[tuple[str, str], Suppression] = {}
        for entry in map(normalized, entries):
            old = merged.get(entry.position)
            merged[entry.position] = entry if old is None else merge(old, entry)
        out = list(merged.values())
        if out:
            await self._put(out)
        return out

    async def remove(self, addresses: Iterable[str], list_name: str | None) -> int:
        """Remove the entries of these addresses or ``@domains`` for ``list_name``
        exactly (None: the global entries; a list's own entries stay). Returns how many
        were removed. ValueError, and nothing removed, when any is invalid."""
        keys: list[str] = []
        for value in addresses:
            try:
                keys.append(entry_key(value))
            except ValueError as exc:
                raise ValueError(f"invalid address or domain {value[:300]!r}: {exc}") from None
        scope = None if list_name is None else check_list_name(list_name)
        keys = list(dict.fromkeys(keys))
        return await self._delete(keys, scope) if keys else 0

    async def entries(
        self,
        list_name: str | Scope | None = ALL_LISTS,
        reason: Reason | None = None,
        limit: int = 1000,
        after: tuple[str, str] | None = None,
    ) -> list[Suppression]:
        """Up to ``limit`` entries, expired ones included, ordered by ``position``
        (address, then list, the global entry first), starting after the cursor
        ``after`` (the ``position`` of the last entry of the page before). ``list_name``:
        one list's own entries, None the global ones, ALL_LISTS every entry."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        wanted = None if reason is None else Reason(reason)
        return await self._page(_list_filter(list_name), wanted, limit, after)

    async def suppressed(
        self, addresses: Iterable[str], list_name: str | None, now: float
    ) -> set[str]:
        """Those of ``addresses`` (returned as given) that must not be mailed on
        ``list_name`` (None: checked against the global entries only) at ``now``: one
        backend query for the whole batch. A value that is not an address is never
        suppressed (it cannot be mailed either)."""
        scope = None if list_name is None else check_list_name(list_name)
        by_key: dict[str, list[str]] = {}
        for address in addresses:
            key = lookup_key(address)
            if key is not None:
                by_key.setdefault(key, []).append(address)
                by_key.setdefault(domain_key(key), []).append(address)
        if not by_key:
            return set()
        hits = await self._match(by_key.keys(), scope, now)
        return {address for key in hits for address in by_key[key]}

    async def purge_expired(self, now: float) -> int:
        """Delete the entries that expired at or before ``now``; returns how many."""
        return await self._purge(now)

    # -- backend hooks: arguments already checked and normalised ---------------------

    @abc.abstractmethod
    async def _put(self, entries: Sequence[Suppression]) -> None:
        """Store entries, at most one per ``position``: one whose (address, list) is
        stored already replaces it only when it ``outlasts`` it (:func:`merge`); in SQL
        ``ON CONFLICT (address, list) DO UPDATE SET ... WHERE stored.expires_at IS NOT
        NULL AND (excluded.expires_at IS NULL OR excluded.expires_at >
        stored.expires_at)``."""

    @abc.abstractmethod
    async def _delete(self, keys: Sequence[str], list_name: str | None) -> int:
        """Delete the entries of ``keys`` (unique) for exactly ``list_name`` (None:
        global); return how many existed."""

    @abc.abstractmethod
    async def _page(
        self,
        list_name: str | Scope | None,
        reason: Reason | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Suppression]:
        """Entries in ``position`` order (code-point order of the ASCII keys: ``COLLATE
        "C"`` in PostgreSQL), ``position > after``, filtered, ``limit`` at most."""

    @abc.abstractmethod
    async def _match(self, keys: Collection[str], list_name: str | None, now: float) -> set[str]:
        """Those of ``keys`` (address keys and ``@domain`` keys) that have an entry for
        ``list_name`` or global that is active at ``now``: one query."""

    @abc.abstractmethod
    async def _purge(self, now: float) -> int:
        """Delete entries with ``expires_at <= now``; return how many."""


class MemorySuppressionList(SuppressionList):
    """A suppression list in a dict, for tests and the in-memory queue."""

    def __init__(self, events: MemoryEventLog | None = None) -> None:
        self._entries: dict[tuple[str, str], Suppression] = {}
        self._events = events

    def __len__(self) -> int:
        return len(self._entries)

    async def _put(self, entries: Sequence[Suppression]) -> None:
        for entry in entries:
            old = self._entries.get(entry.position)
            if old is None and entry.reason is Reason.UNSUBSCRIBED and self._events:
                self._events.append(
                    EventType.UNSUBSCRIBED, at=entry.created_at, recipients=(entry.address,),
                    detail=entry.list_name or "", reason=entry.source,
                )  # fmt: skip
            self._entries[entry.position] = entry if old is None else merge(old, entry)

    async def _delete(self, keys: Sequence[str], list_name: str | None) -> int:
        found = [self._entries.pop((k, list_name or ""), None) for k in keys]
        return sum(1 for e in found if e is not None)

    async def _page(
        self,
        list_name: str | Scope | None,
        reason: Reason | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Suppression]:
        out: list[Suppression] = []
        for position in sorted(self._entries):
            if after is not None and position <= after:
                continue
            entry = self._entries[position]
            if list_name is not ALL_LISTS and entry.list_name != list_name:
                continue
            if reason is not None and entry.reason != reason:
                continue
            out.append(entry)
            if len(out) == limit:
                break
        return out

    async def _match(self, keys: Collection[str], list_name: str | None, now: float) -> set[str]:
        scopes = ("", list_name) if list_name else ("",)
        return {
            key
            for key in keys
            for scope in scopes
            if (entry := self._entries.get((key, scope))) is not None and entry.active(now)
        }

    async def _purge(self, now: float) -> int:
        gone = [p for p, e in self._entries.items() if not e.active(now)]
        for position in gone:
            del self._entries[position]
        return len(gone)
