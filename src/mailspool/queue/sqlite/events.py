"""The SQLite queue's event log: the tables ``events``, ``event_endpoints`` and
``event_pending`` of the queue's file (:data:`mailspool.queue.sqlite.schema.EVENTS`), on
the queue's own thread and connection, each call one transaction.

Nothing here writes an event: triggers do, in the statement that changes the job, the
return or the suppression (see EVENTS), so no path that changes a job can leave its
event out. A cursor is an event's ``seq`` in decimal; a batch of cursors goes in as one
JSON array (``json_each``), as the suppression list's keys do. An event's detail is
stored whole and clipped here (the triggers call no SQL function: see EVENTS).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from mailspool.queue.events import Endpoint, Event, EventLog, EventType, Pending, clip
from mailspool.queue.sqlite.suppressions import Runner

_EVENT = "seq, type, at, job_id, campaign, recipients, detail, reason, attempts, permanent"
_PENDING = "seq, attempts, next_at, first_at, error, dead"
_ENDPOINT = (
    "SELECT name, cursor, owner, lease_until,"
    " (SELECT count(*) FROM event_pending p WHERE p.endpoint = e.name AND p.dead = 0),"
    " (SELECT count(*) FROM event_pending p WHERE p.endpoint = e.name AND p.dead = 1)"
    " FROM event_endpoints e"
)
# taken when new (starting at the newest event), free, expired, or already the owner's
_LEASE = (
    "INSERT INTO event_endpoints (name, cursor, owner, lease_until)"
    " VALUES (?1, (SELECT max(seq) FROM events), ?2, ?3)"
    " ON CONFLICT (name) DO UPDATE SET owner = ?2, lease_until = ?3"
    " WHERE event_endpoints.owner IN ('', ?2) OR event_endpoints.lease_until <= ?4"
)
_HELD = "SELECT 1 FROM event_endpoints WHERE name = ? AND owner = ? AND lease_until > ?"
_PUT = (
    "INSERT OR REPLACE INTO event_pending (endpoint, seq, attempts, next_at, first_at,"
    " error, dead) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_MAX_SEQ = 2**63 - 1  # SQLite's largest INTEGER


def seq_of(cursor: str) -> int | None:
    """The event number a cursor names, or None when it names none: a cursor is the
    number's decimal form and nothing else (no sign, no leading zero, no spaces)."""
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19:
        return None
    n = int(cursor)
    return n if str(n) == cursor and n <= _MAX_SEQ else None


def _seq(cursor: str) -> int:
    n = seq_of(cursor)
    if n is None:
        raise ValueError(f"invalid event cursor {cursor[:40]!r}")
    return n


def _event(r: Sequence[Any]) -> Event:
    return Event(
        cursor=str(r[0]), type=EventType(r[1]), at=r[2], job_id=r[3], campaign=r[4],
        recipients=tuple(r[5].split("\n")), detail=clip(r[6]), reason=r[7], attempts=r[8],
        permanent=bool(r[9]),
    )  # fmt: skip


def _pending(r: Sequence[Any]) -> Pending:
    return Pending(str(r[0]), r[1], r[2], r[3], r[4], bool(r[5]))


def _endpoint(r: Sequence[Any]) -> Endpoint:
    cursor = None if r[1] is None else str(r[1])
    return Endpoint(r[0], cursor, r[2], r[3], r[4], r[5])


class SQLiteEventLog(EventLog):
    """The event log in the queue's file; ``run`` is the queue's ``_run``."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    # -- events -------------------------------------------------------------------------

    async def _read(self, after: str | None, limit: int) -> list[Event]:
        args = (0 if after is None else _seq(after), limit)
        sql = f"SELECT {_EVENT} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        return await self._run(lambda db: [_event(r) for r in db.execute(sql, args)])

    async def _get(self, cursors: list[str]) -> list[Event]:
        seqs = [n for n in map(seq_of, cursors) if n is not None]
        if not seqs:
            return []
        sql = (
            f"SELECT {_EVENT} FROM events WHERE seq IN (SELECT value FROM json_each(?))"
            " ORDER BY seq"
        )
        args = (json.dumps(seqs),)
        return await self._run(lambda db: [_event(r) for r in db.execute(sql, args)])

    async def _head(self) -> str | None:
        def q(db: sqlite3.Connection) -> str | None:
            (seq,) = db.execute("SELECT max(seq) FROM events").fetchone()
            return None if seq is None else str(seq)

        return await self._run(q)

    async def _prune(self, before: float) -> int:
        def tx(db: sqlite3.Connection) -> int:
            n = int(db.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount)
            db.execute("DELETE FROM event_pending WHERE seq NOT IN (SELECT seq FROM events)")
            return n

        return await self._run(tx)

    # -- endpoints ----------------------------------------------------------------------

    async def _lease(self, name: str, owner: str, until: float) -> Endpoint | None:
        args = (name, owner, until, time.time())

        def tx(db: sqlite3.Connection) -> Endpoint | None:
            if db.execute(_LEASE, args).rowcount == 0:
                return None  # another owner holds it
            return _endpoint(db.execute(f"{_ENDPOINT} WHERE name = ?", (name,)).fetchone())

        return await self._run(tx)

    async def _advance(self, name: str, owner: str, cursor: str) -> bool:
        args = (name, owner, time.time())
        seq = seq_of(cursor)

        def tx(db: sqlite3.Connection) -> bool:
            if db.execute(_HELD, args).fetchone() is None:
                return False
            if seq is None:  # checked once held: the answer to another owner stays False
                raise ValueError(f"invalid event cursor {cursor[:40]!r}")
            db.execute("UPDATE event_endpoints SET cursor = ? WHERE name = ?", (seq, name))
            return True

        return await self._run(tx)

    async def _endpoints(self) -> list[Endpoint]:
        sql = f"{_ENDPOINT} ORDER BY name"
        return await self._run(lambda db: [_endpoint(r) for r in db.execute(sql)])

    async def _put_pending(self, name: str, rows: Sequence[Pending]) -> None:
        args = [
            (name, _seq(r.cursor), r.attempts, r.next_at, r.first_at, r.error, int(r.dead))
            for r in rows
        ]
        await self._run(lambda db: db.executemany(_PUT, args))

    async def _due(self, name: str, now: float, limit: int) -> list[Pending]:
        sql = (
            f"SELECT {_PENDING} FROM event_pending WHERE endpoint = ? AND dead = 0"
            " AND next_at <= ? ORDER BY next_at, seq LIMIT ?"
        )
        args = (name, now, limit)
        return await self._run(lambda db: [_pending(r) for r in db.execute(sql, args)])

    async def _drop_pending(self, name: str, cursors: list[str]) -> None:
        seqs = [n for n in map(seq_of, cursors) if n is not None]
        sql = (
            "DELETE FROM event_pending WHERE endpoint = ?"
            " AND seq IN (SELECT value FROM json_each(?))"
        )
        args = (name, json.dumps(seqs))
        if seqs:
            await self._run(lambda db: db.execute(sql, args))

    async def _pending(self, name: str, dead: bool, limit: int) -> list[Pending]:
        sql = (
            f"SELECT {_PENDING} FROM event_pending WHERE endpoint = ? AND dead = ?"
            " ORDER BY seq LIMIT ?"
        )
        args = (name, int(dead), limit)
        return await self._run(lambda db: [_pending(r) for r in db.execute(sql, args)])

    async def _revive(self, name: str, now: float) -> int:
        sql = (
            "UPDATE event_pending SET attempts = 0, next_at = ?1, first_at = ?1, error = '',"
            " dead = 0 WHERE endpoint = ?2 AND dead = 1"
        )
        return await self._run(lambda db: int(db.execute(sql, (now, name)).rowcount))
