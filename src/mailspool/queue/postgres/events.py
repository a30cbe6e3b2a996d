"""The PostgreSQL store's job events: the tables ``events``, ``endpoints`` and ``pending``
of the store's schema (:data:`mailspool.queue.postgres.schema.EVENTS_DDL`), on the
store's pool, each call one statement (prune: one transaction).

Events are written by triggers on the jobs, returns and suppressions tables, in the
transaction of the change that causes them; this module only reads them and keeps the
endpoints' delivery state.

An event's cursor is its writer's transaction id (``xid``) then its ``seq``. Neither is
in commit order: a transaction may commit after a younger one, and take its ``seq``
numbers before or after it. So a read returns only the events of transactions older than
every transaction still open (``xid`` below the snapshot's xmin), in (xid, seq) order:
any event written later (by a transaction still open, or yet to start) has a greater xid
than every event returned, and a poller reading after the last cursor it got misses
none. The cost: an event is read once every transaction begun before its own (in any
database of the server) has ended; at once when none is open.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from typing import Any

from mailspool.queue.events import Endpoint, Event, EventLog, EventType, Pending
from mailspool.queue.postgres.suppressions import Call

_CURSOR = re.compile(r"(\d{1,20})-(\d{1,19})")
_EVENT = "xid::text AS xid, seq, type, at, job_id, campaign, recipients, detail, reason,"
_EVENT += " attempts, permanent"
_PENDING = "xid::text AS xid, seq, attempts, next_at, first_at, error, dead"
# the events of transactions that have all ended, as of this statement's snapshot
_SETTLED = "xid < pg_snapshot_xmin(pg_current_snapshot())"


def _count(status: str) -> int:
    """The row count of a command status (``DELETE 3``)."""
    return int(status.rpartition(" ")[2] or 0)


def cursor_of(xid: int | str, seq: int) -> str:
    """The cursor of an event: fixed width, so that cursors sort as their events do."""
    return f"{int(xid):020d}-{seq:019d}"


def parse_cursor(cursor: str) -> tuple[str, int] | None:
    """(xid, seq) of a cursor, the xid as text for a ``::xid8`` cast; None: malformed."""
    m = _CURSOR.fullmatch(cursor)
    if m is None or int(m[1]) >= 2**64 or int(m[2]) >= 2**63:
        return None
    return str(int(m[1])), int(m[2])


def _event(r: Any) -> Event:
    return Event(
        cursor_of(r["xid"], r["seq"]), EventType(r["type"]), r["at"], job_id=r["job_id"],
        campaign=r["campaign"], recipients=tuple(r["recipients"].split("\n")),
        detail=r["detail"], reason=r["reason"], attempts=r["attempts"],
        permanent=r["permanent"],
    )  # fmt: skip


def _pending(r: Any) -> Pending:
    return Pending(
        cursor_of(r["xid"], r["seq"]), r["attempts"], r["next_at"], r["first_at"],
        r["error"], r["dead"],
    )  # fmt: skip


def _positions(cursors: Sequence[str]) -> tuple[list[str], list[int]]:
    """The (xid, seq) of well-formed cursors, as two arrays; the others dropped."""
    xids: list[str] = []
    seqs: list[int] = []
    for c in cursors:
        if (pos := parse_cursor(c)) is not None:
            xids.append(pos[0])
            seqs.append(pos[1])
    return xids, seqs


class PostgresEventLog(EventLog):
    """Events and webhook delivery state in ``schema``; ``call`` is the store's ``_call``
    (a pooled connection, errors as QueueError)."""

    def __init__(self, call: Call, schema: str) -> None:
        self._call = call
        self._s = schema
        self._head_sql = (
            f"SELECT xid::text AS xid, seq FROM {schema}.events WHERE {_SETTLED}"
            " ORDER BY xid DESC, seq DESC LIMIT 1"
        )

    async def _read(self, after: str | None, limit: int) -> list[Event]:
        args: list[Any] = [limit]
        where = _SETTLED
        if after is not None:
            pos = parse_cursor(after)
            if pos is None:
                raise ValueError(f"invalid cursor {after[:50]!r}")
            args += pos
            where += " AND (xid, seq) > ($2::text::xid8, $3)"
        sql = f"SELECT {_EVENT} FROM {self._s}.events WHERE {where} ORDER BY xid, seq LIMIT $1"
        rows = await self._call(lambda con: con.fetch(sql, *args))
        return [_event(r) for r in rows]

    async def _get(self, cursors: list[str]) -> list[Event]:
        xids, seqs = _positions(cursors)
        if not xids:
            return []
        sql = (
            f"SELECT {_EVENT} FROM {self._s}.events WHERE (xid, seq) IN (SELECT x::xid8, s"
            " FROM unnest($1::text[], $2::bigint[]) AS c(x, s)) ORDER BY xid, seq"
        )
        rows = await self._call(lambda con: con.fetch(sql, xids, seqs))
        return [_event(r) for r in rows]

    async def _head(self) -> str | None:
        row = await self._call(lambda con: con.fetchrow(self._head_sql))
        return None if row is None else cursor_of(row["xid"], row["seq"])

    async def _prune(self, before: float) -> int:
        result: int = await self._call(functools.partial(self._prune_in, before))
        return result

    async def _prune_in(self, before: float, con: Any) -> int:
        async with con.transaction():
            n = _count(await con.execute(f"DELETE FROM {self._s}.events WHERE at < $1", before))
            await con.execute(
                f"DELETE FROM {self._s}.pending p WHERE NOT EXISTS (SELECT 1 FROM"
                f" {self._s}.events e WHERE e.xid = p.xid AND e.seq = p.seq)"
            )
        return n

    # -- endpoints ----------------------------------------------------------------------

    async def _lease(self, name: str, owner: str, until: float) -> Endpoint | None:
        result: Endpoint | None = await self._call(
            functools.partial(self._lease_in, name, owner, until)
        )
        return result

    async def _lease_in(self, name: str, owner: str, until: float, con: Any) -> Endpoint | None:
        # taken when free, expired or already the owner's; a new endpoint starts at the
        # head (computed here even when the row exists: one statement, one index probe)
        head = (
            f"(SELECT lpad(xid::text, 20, '0') || '-' || lpad(seq::text, 19, '0')"
            f" FROM {self._s}.events WHERE {_SETTLED} ORDER BY xid DESC, seq DESC LIMIT 1)"
        )
        row = await con.fetchrow(
            f"INSERT INTO {self._s}.endpoints AS e (name, cursor, owner, lease_until)"
            f" VALUES ($1, {head}, $2, $3) ON CONFLICT (name) DO UPDATE"
            " SET owner = excluded.owner, lease_until = excluded.lease_until"
            # leases are compared with this process's clock, as the jobs' are
            " WHERE e.owner = excluded.owner OR e.lease_until <= $4"
            " RETURNING name, cursor, owner, lease_until",
            name,
            owner,
            until,
            time.time(),
        )
        if row is None:
            return None
        return await self._with_counts(con, row)

    async def _with_counts(self, con: Any, row: Any) -> Endpoint:
        counts = await con.fetchrow(
            f"SELECT count(*) FILTER (WHERE NOT dead) AS retrying, count(*) FILTER (WHERE dead)"
            f" AS dead FROM {self._s}.pending WHERE endpoint = $1",
            row["name"],
        )
        return Endpoint(
            row["name"], row["cursor"], row["owner"], row["lease_until"], counts["retrying"],
            counts["dead"],
        )  # fmt: skip

    async def _advance(self, name: str, owner: str, cursor: str) -> bool:
        sql = (
            f"UPDATE {self._s}.endpoints SET cursor = $3 WHERE name = $1 AND owner = $2"
            " AND lease_until > $4"
        )
        now = time.time()
        status = await self._call(lambda con: con.execute(sql, name, owner, cursor, now))
        return _count(status) == 1

    async def _endpoints(self) -> list[Endpoint]:
        sql = (
            "SELECT e.name, e.cursor, e.owner, e.lease_until,"
            " count(p.seq) FILTER (WHERE NOT p.dead) AS retrying,"
            " count(p.seq) FILTER (WHERE p.dead) AS dead"
            f" FROM {self._s}.endpoints e LEFT JOIN {self._s}.pending p ON p.endpoint = e.name"
            " GROUP BY e.name ORDER BY e.name"
        )
        rows = await self._call(lambda con: con.fetch(sql))
        return [
            Endpoint(r["name"], r["cursor"], r["owner"], r["lease_until"], r["retrying"], r["dead"])
            for r in rows
        ]

    # -- pending rows -------------------------------------------------------------------

    async def _put_pending(self, name: str, rows: Sequence[Pending]) -> None:
        xids, seqs = [], []
        for r in rows:
            pos = parse_cursor(r.cursor)
            if pos is None:
                raise ValueError(f"invalid cursor {r.cursor[:50]!r}")
            xids.append(pos[0])
            seqs.append(pos[1])
        sql = (
            f"INSERT INTO {self._s}.pending (endpoint, xid, seq, attempts, next_at, first_at,"
            " error, dead) SELECT $1, x::xid8, s, a, n, f, e, d FROM unnest($2::text[],"
            " $3::bigint[], $4::int[], $5::float8[], $6::float8[], $7::text[], $8::bool[])"
            " AS r(x, s, a, n, f, e, d) ON CONFLICT (endpoint, xid, seq) DO UPDATE SET"
            " attempts = excluded.attempts, next_at = excluded.next_at,"
            " first_at = excluded.first_at, error = excluded.error, dead = excluded.dead"
        )
        args = (
            name, xids, seqs, [r.attempts for r in rows], [r.next_at for r in rows],
            [r.first_at for r in rows], [r.error for r in rows], [r.dead for r in rows],
        )  # fmt: skip
        await self._call(lambda con: con.execute(sql, *args))

    async def _due(self, name: str, now: float, limit: int) -> list[Pending]:
        sql = (
            f"SELECT {_PENDING} FROM {self._s}.pending WHERE endpoint = $1 AND NOT dead"
            " AND next_at <= $2 ORDER BY next_at, xid, seq LIMIT $3"
        )
        rows = await self._call(lambda con: con.fetch(sql, name, now, limit))
        return [_pending(r) for r in rows]

    async def _drop_pending(self, name: str, cursors: list[str]) -> None:
        xids, seqs = _positions(cursors)
        if not xids:
            return
        sql = (
            f"DELETE FROM {self._s}.pending WHERE endpoint = $1 AND (xid, seq) IN"
            " (SELECT x::xid8, s FROM unnest($2::text[], $3::bigint[]) AS c(x, s))"
        )
        await self._call(lambda con: con.execute(sql, name, xids, seqs))

    async def _pending(self, name: str, dead: bool, limit: int) -> list[Pending]:
        sql = (
            f"SELECT {_PENDING} FROM {self._s}.pending WHERE endpoint = $1 AND dead = $2"
            " ORDER BY xid, seq LIMIT $3"
        )
        rows = await self._call(lambda con: con.fetch(sql, name, dead, limit))
        return [_pending(r) for r in rows]

    async def _revive(self, name: str, now: float) -> int:
        sql = (
            f"UPDATE {self._s}.pending SET attempts = 0, next_at = $2, first_at = $2,"
            " error = '', dead = false WHERE endpoint = $1 AND dead"
        )
        return _count(await self._call(lambda con: con.execute(sql, name, now)))
