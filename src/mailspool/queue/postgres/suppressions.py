"""The PostgreSQL store's suppression list: the table ``suppressions`` of the store's
schema (:data:`mailspool.queue.postgres.schema.SUPPRESSIONS_DDL`), on the store's pool,
each call one statement.

Keys are ``COLLATE "C"``: pages come in code-point order, as in every backend, and
walk an index (the primary key (address, list), or (list, address) for one list). A
batch check is one SELECT of the keys as one array, each looked up in an index.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from mailspool.queue.suppression import (
    ALL_LISTS,
    Reason,
    Scope,
    Suppression,
    SuppressionList,
)

Call = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]

#: entries a statement writes (parallel arrays)
BATCH = 10_000
_COLUMNS = "address, list, reason, source, created_at, expires_at"


def _entry(r: Any) -> Suppression:
    return Suppression(
        r["address"], r["list"] or None, Reason(r["reason"]), r["source"], r["created_at"],
        r["expires_at"],
    )  # fmt: skip


def _count(status: str) -> int:
    """The row count of a command status (``DELETE 3``)."""
    return int(status.rpartition(" ")[2] or 0)


class PostgresSuppressionList(SuppressionList):
    """The suppression list in ``table``; ``call`` is the store's ``_call`` (a pooled
    connection, errors as QueueError)."""

    def __init__(self, call: Call, table: str) -> None:
        self._call = call
        self._t = table
        self._put_sql = (
            f"INSERT INTO {table} AS s ({_COLUMNS}) SELECT * FROM unnest($1::text[],"
            " $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[])"
            " ON CONFLICT (address, list) DO UPDATE SET reason = excluded.reason,"
            " source = excluded.source, created_at = excluded.created_at,"
            " expires_at = excluded.expires_at"
            # only an entry that lasts longer replaces the one stored (suppression.merge)
            " WHERE s.expires_at IS NOT NULL AND (excluded.expires_at IS NULL"
            " OR excluded.expires_at > s.expires_at)"
        )
        # One index probe per key (the keys are distinct), whatever the statistics: as
        # "address = ANY($1)", a table never analyzed (just filled by an import) or a
        # small one is read whole for a batch of thousands of keys. A LATERAL subquery
        # with a LIMIT is never flattened into a hash or merge join.
        self._match_sql = (
            f"SELECT k.address FROM unnest($1::text[]) AS k(address), LATERAL (SELECT 1"
            f" FROM {table} s WHERE s.address = k.address AND s.list = ANY($2::text[])"
            " AND (s.expires_at IS NULL OR s.expires_at > $3) LIMIT 1) AS hit"
        )

    async def _put(self, entries: Sequence[Suppression]) -> None:
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            columns = (
                [e.address for e in chunk],
                [e.list_name or "" for e in chunk],
                [e.reason.value for e in chunk],
                [e.source for e in chunk],
                [e.created_at for e in chunk],
                [e.expires_at for e in chunk],
            )
            await self._call(functools.partial(self._write, columns))

    async def _write(self, columns: tuple[list[Any], ...], con: Any) -> None:
        await con.execute(self._put_sql, *columns)

    async def _delete(self, keys: Sequence[str], list_name: str | None) -> int:
        sql = f"DELETE FROM {self._t} WHERE list = $1 AND address = ANY($2::text[])"
        status = await self._call(lambda con: con.execute(sql, list_name or "", list(keys)))
        return _count(status)

    async def _page(
        self,
        list_name: str | Scope | None,
        reason: Reason | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Suppression]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if list_name is ALL_LISTS:
            order = "address, list"
            if after is not None:
                where.append(f"(address, list) > ({arg(after[0])}, {arg(after[1])})")
        else:
            scope = list_name or ""
            order = "address"
            where.append(f"list = {arg(scope)}")
            if after is not None:  # with the list fixed: see the SQLite queue's page_query
                where.append(f"address {'>=' if scope > after[1] else '>'} {arg(after[0])}")
        if reason is not None:
            where.append(f"reason = {arg(reason.value)}")
        sql = f"SELECT {_COLUMNS} FROM {self._t}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT {arg(limit)}"
        rows = await self._call(lambda con: con.fetch(sql, *args))
        return [_entry(r) for r in rows]

    async def _match(self, keys: Collection[str], list_name: str | None, now: float) -> set[str]:
        scopes = ["", list_name] if list_name else [""]
        rows = await self._call(lambda con: con.fetch(self._match_sql, list(keys), scopes, now))
        return {r["address"] for r in rows}

    async def _purge(self, now: float) -> int:
        sql = f"DELETE FROM {self._t} WHERE expires_at IS NOT NULL AND expires_at <= $1"
        return _count(await self._call(lambda con: con.execute(sql, now)))
