"""The SQLite queue's suppression list: the table ``suppressions`` of the queue's file
(:mod:`mailspool.queue.sqlite.schema`), read and written on the queue's own thread and
connection, each call one transaction.

A batch check is one SELECT whatever its size: the keys go in as one JSON array
(``json_each``), so no statement is built per batch and no limit on parameters applies;
SQLite looks each key up in the primary key (address, list), for the list and global.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol, TypeVar

from mailspool.queue.suppression import (
    ALL_LISTS,
    Reason,
    Scope,
    Suppression,
    SuppressionList,
)

T = TypeVar("T")

_COLUMNS = "address, list, reason, source, created_at, expires_at"
# OR FAIL: no statement journal for the unsubscribe trigger (see SQLiteQueue.record)
_PUT = (
    f"INSERT OR FAIL INTO suppressions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (address, list) DO UPDATE SET reason = excluded.reason,"
    " source = excluded.source, created_at = excluded.created_at,"
    " expires_at = excluded.expires_at"
    # only an entry that lasts longer replaces the one stored (suppression.merge)
    " WHERE suppressions.expires_at IS NOT NULL AND (excluded.expires_at IS NULL"
    " OR excluded.expires_at > suppressions.expires_at)"
)
_MATCH = (
    "SELECT DISTINCT address FROM suppressions"
    " WHERE address IN (SELECT value FROM json_each(?)) AND list IN ('', ?)"
    " AND (expires_at IS NULL OR expires_at > ?)"
)
_DELETE = "DELETE FROM suppressions WHERE list = ? AND address IN (SELECT value FROM json_each(?))"
_PURGE = "DELETE FROM suppressions WHERE expires_at IS NOT NULL AND expires_at <= ?"


class Runner(Protocol):
    """The queue's ``_run``: ``fn`` on the queue's thread, in one transaction."""

    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]: ...


def _row(e: Suppression) -> tuple[Any, ...]:
    return (e.address, e.list_name or "", e.reason.value, e.source, e.created_at, e.expires_at)


def _entry(r: Sequence[Any]) -> Suppression:
    return Suppression(r[0], r[1] or None, Reason(r[2]), r[3], r[4], r[5])


def page_query(
    list_name: str | Scope | None,
    reason: Reason | None,
    limit: int,
    after: tuple[str, str] | None,
) -> tuple[str, list[Any]]:
    """The SELECT of one page. One list's
    page walks the index (list, address): with the list fixed, ``position > after`` is
    ``address > a``, or ``>=`` when this list sorts after the cursor's."""
    where: list[str] = []
    args: list[Any] = []
    if list_name is ALL_LISTS:
        order = "address, list"
        if after is not None:
            where.append("(address, list) > (?, ?)")
            args += after
    else:
        scope = list_name or ""
        order = "address"
        where.append("list = ?")
        args.append(scope)
        if after is not None:
            where.append("address >= ?" if scope > after[1] else "address > ?")
            args.append(after[0])
    if reason is not None:
        where.append("reason = ?")
        args.append(reason.value)
    sql = f"SELECT {_COLUMNS} FROM suppressions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql} ORDER BY {order} LIMIT ?", [*args, limit]


class SQLiteSuppressionList(SuppressionList):
    """The suppression list in the queue's file; ``run`` is the queue's ``_run`` (its
    thread, its connection, one transaction a call)."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    async def _put(self, entries: Sequence[Suppression]) -> None:
        rows = [_row(e) for e in entries]
        await self._run(lambda db: db.executemany(_PUT, rows))

    async def _delete(self, keys: Sequence[str], list_name: str | None) -> int:
        args = (list_name or "", json.dumps(list(keys)))
        return await self._run(lambda db: db.execute(_DELETE, args).rowcount)

    async def _page(
        self,
        list_name: str | Scope | None,
        reason: Reason | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Suppression]:
        sql, args = page_query(list_name, reason, limit, after)
        return await self._run(lambda db: [_entry(r) for r in db.execute(sql, args)])

    async def _match(self, keys: Collection[str], list_name: str | None, now: float) -> set[str]:
        args = (json.dumps(list(keys)), list_name or "", now)
        return await self._run(lambda db: {r[0] for r in db.execute(_MATCH, args)})

    async def _purge(self, now: float) -> int:
        return await self._run(lambda db: db.execute(_PURGE, (now,)).rowcount)
