"""The PostgreSQL store's returned mail: the tables ``returns`` and ``unmatched`` of the
store's schema (:data:`mailspool.queue.postgres.schema.RETURNS_DDL`), and jobs found by
the id their Message-ID names, on the store's pool, each call one statement."""

from __future__ import annotations

from typing import Any

from mailspool.queue.postgres.suppressions import Call
from mailspool.queue.returns import (
    ReturnCounts,
    ReturnEvent,
    ReturnKind,
    ReturnLog,
    Unmatched,
)

_EVENT = "key, kind, address, permanent, at, status, diagnostic"
_UNMATCHED = "digest, reason, received_at, size, data, envelope_to"


def _event(r: Any) -> ReturnEvent:
    return ReturnEvent(
        key=r["key"], kind=ReturnKind(r["kind"]), address=r["address"],
        permanent=r["permanent"], at=r["at"], status=r["status"], diagnostic=r["diagnostic"],
    )  # fmt: skip


class PostgresReturnLog(ReturnLog):
    """Returned mail in ``schema``; ``call`` is the store's ``_call`` (a pooled
    connection, errors as QueueError)."""

    def __init__(self, call: Call, schema: str) -> None:
        self._call = call
        self._s = schema

    async def _find(self, job_id: str, message_id: str) -> str | None:
        sql = f"SELECT id FROM {self._s}.jobs WHERE id = $1 AND lower(message_id) = lower($2)"
        found: str | None = await self._call(lambda con: con.fetchval(sql, job_id, message_id))
        return found

    async def _record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        e = event
        sql = (
            f"INSERT INTO {self._s}.returns (key, job_id, campaign, kind, address, permanent,"
            " status, diagnostic, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (key) DO NOTHING RETURNING seq"
        )
        args = (
            e.key, job_id, campaign, e.kind.value, e.address, e.permanent, e.status,
            e.diagnostic, e.at,
        )  # fmt: skip
        seq = await self._call(lambda con: con.fetchval(sql, *args))
        return seq is not None

    async def _counts(self, campaign: str | None) -> ReturnCounts:
        where = "" if campaign is None else " WHERE campaign = $1"
        sql = (
            "SELECT kind, permanent, count(*) AS n FROM (SELECT DISTINCT job_id, address, kind,"
            f" kind = 'complained' OR permanent AS permanent FROM {self._s}.returns{where}) t"
            " GROUP BY 1, 2"
        )
        args = () if campaign is None else (campaign,)
        rows = await self._call(lambda con: con.fetch(sql, *args))
        got = {"bounced": 0, "soft_bounced": 0, "complained": 0}
        for r in rows:
            if r["kind"] == ReturnKind.COMPLAINED.value:
                got["complained"] += r["n"]
            else:
                got["bounced" if r["permanent"] else "soft_bounced"] += r["n"]
        return ReturnCounts(**got)

    async def _latest(self, job_id: str) -> ReturnEvent | None:
        sql = (
            f"SELECT {_EVENT} FROM {self._s}.returns WHERE job_id = $1"
            " ORDER BY at DESC, seq DESC LIMIT 1"
        )
        row = await self._call(lambda con: con.fetchrow(sql, job_id))
        return None if row is None else _event(row)

    async def _soft(self, address: str, since: float) -> int:
        sql = (
            f"SELECT count(*) FROM {self._s}.returns WHERE address = $1 AND NOT permanent"
            " AND kind = 'bounced' AND at >= $2"
        )
        return int(await self._call(lambda con: con.fetchval(sql, address, since)))

    async def _keep(self, item: Unmatched) -> bool:
        sql = (
            f"INSERT INTO {self._s}.unmatched ({_UNMATCHED}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (digest) DO NOTHING RETURNING digest"
        )
        args = (
            item.digest, item.reason, item.received_at, item.size, item.data, item.envelope_to
        )  # fmt: skip
        return await self._call(lambda con: con.fetchval(sql, *args)) is not None

    async def _unmatched_count(self) -> int:
        sql = f"SELECT count(*) FROM {self._s}.unmatched"
        return int(await self._call(lambda con: con.fetchval(sql)))

    async def _unmatched(self, limit: int) -> list[Unmatched]:
        sql = f"SELECT {_UNMATCHED} FROM {self._s}.unmatched ORDER BY received_at, digest LIMIT $1"
        rows = await self._call(lambda con: con.fetch(sql, limit))
        return [
            Unmatched(
                r["digest"],
                r["reason"],
                r["received_at"],
                r["size"],
                bytes(r["data"]),
                r["envelope_to"],
            )
            for r in rows
        ]
