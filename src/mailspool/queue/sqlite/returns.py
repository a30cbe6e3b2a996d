"""The SQLite queue's returned mail: the tables ``returns`` and ``unmatched`` of the
queue's file (:data:`mailspool.queue.sqlite.schema.RETURNS`), and jobs found by the id
their Message-ID names, on the queue's own thread and connection, each call one
transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from mailspool.queue.returns import (
    ReturnCounts,
    ReturnEvent,
    ReturnKind,
    ReturnLog,
    Unmatched,
)
from mailspool.queue.sqlite.suppressions import Runner

_EVENT = "key, kind, address, permanent, at, status, diagnostic"
_INSERT = (
    "INSERT INTO returns (key, job_id, campaign, kind, address, permanent, status,"
    " diagnostic, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
_COUNTS = (
    "SELECT kind, permanent, count(*) FROM (SELECT DISTINCT job_id, address, kind,"
    " kind = 'complained' OR permanent AS permanent FROM returns{where}) GROUP BY 1, 2"
)
_UNMATCHED = "digest, reason, received_at, size, data, envelope_to"


def event_from_row(r: Any) -> ReturnEvent:
    return ReturnEvent(
        key=r[0], kind=ReturnKind(r[1]), address=r[2], permanent=bool(r[3]), at=r[4],
        status=r[5], diagnostic=r[6],
    )  # fmt: skip


def counts_from_rows(rows: Any) -> ReturnCounts:
    """(kind, permanent, count) rows as counts; a complaint counts whatever its flag."""
    got = {"bounced": 0, "soft_bounced": 0, "complained": 0}
    for kind, permanent, n in rows:
        if kind == ReturnKind.COMPLAINED.value:
            got["complained"] += n
        else:
            got["bounced" if permanent else "soft_bounced"] += n
    return ReturnCounts(**got)


class SQLiteReturnLog(ReturnLog):
    """Returned mail in the queue's file; ``run`` is the queue's ``_run``."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    async def _find(self, job_id: str, message_id: str) -> str | None:
        def q(db: sqlite3.Connection) -> str | None:
            sql = "SELECT id FROM jobs WHERE id = ? AND lower(message_id) = lower(?)"
            row = db.execute(sql, (job_id, message_id))
            found = row.fetchone()
            return None if found is None else str(found[0])

        return await self._run(q)

    async def _record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        e = event
        args = (
            e.key, job_id, campaign, e.kind.value, e.address, int(e.permanent), e.status,
            e.diagnostic, e.at,
        )  # fmt: skip
        return await self._run(lambda db: db.execute(_INSERT, args).rowcount == 1)

    async def _counts(self, campaign: str | None) -> ReturnCounts:
        sql = _COUNTS.format(where="" if campaign is None else " WHERE campaign = ?")
        args = () if campaign is None else (campaign,)
        return await self._run(lambda db: counts_from_rows(db.execute(sql, args).fetchall()))

    async def _latest(self, job_id: str) -> ReturnEvent | None:
        sql = f"SELECT {_EVENT} FROM returns WHERE job_id = ? ORDER BY at DESC, seq DESC LIMIT 1"

        def q(db: sqlite3.Connection) -> ReturnEvent | None:
            row = db.execute(sql, (job_id,)).fetchone()
            return None if row is None else event_from_row(row)

        return await self._run(q)

    async def _soft(self, address: str, since: float) -> int:
        sql = (
            "SELECT count(*) FROM returns WHERE address = ? AND permanent = 0"
            " AND kind = 'bounced' AND at >= ?"
        )
        return await self._run(lambda db: int(db.execute(sql, (address, since)).fetchone()[0]))

    async def _keep(self, item: Unmatched) -> bool:
        sql = (
            f"INSERT INTO unmatched ({_UNMATCHED}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (digest) DO NOTHING"
        )
        args = (
            item.digest, item.reason, item.received_at, item.size, item.data, item.envelope_to
        )  # fmt: skip
        return await self._run(lambda db: db.execute(sql, args).rowcount == 1)

    async def _unmatched_count(self) -> int:
        sql = "SELECT count(*) FROM unmatched"
        return await self._run(lambda db: int(db.execute(sql).fetchone()[0]))

    async def _unmatched(self, limit: int) -> list[Unmatched]:
        sql = f"SELECT {_UNMATCHED} FROM unmatched ORDER BY received_at, digest LIMIT ?"
        return await self._run(
            lambda db: [
                Unmatched(r[0], r[1], r[2], r[3], bytes(r[4]), r[5])
                for r in db.execute(sql, (limit,))
            ]
        )
