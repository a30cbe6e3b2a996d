"""The embedded queue: one SQLite file (WAL, synchronous=FULL) is queue and job store.

All statements run on one dedicated thread with its own connection, so the event loop
never blocks on a commit's fsync. Inserts, claims and outcomes go in batches: one
transaction (one fsync) per batch keeps the queue far from being the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailspool.errors import ConfigError, QueueError
from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.base import DeadFilter, Queue, added, final_reason, resumed
from mailspool.queue.sqlite import campaigns as control
from mailspool.queue.sqlite.events import SQLiteEventLog
from mailspool.queue.sqlite.rows import (
    CLAIMABLE,
    HANDED_BACK,
    JOB_COLUMNS,
    dead_where,
    existing_rows,
    insert_chunks,
    insert_new,
    job_from_row,
)
from mailspool.queue.sqlite.schema import open_schema
from mailspool.queue.sqlite.suppressions import SQLiteSuppressionList

if TYPE_CHECKING:
    from mailspool.queue.sqlite.returns import SQLiteReturnLog

T = TypeVar("T")


class SQLiteQueue(Queue):
    """The embedded queue (``sqlite:///file.db``): every role of :class:`Queue` in one
    SQLite file, for one machine. ``path``: the file, created with its folder when
    missing; one process or many on the same machine may share it."""

    packs_messages = True

    @classmethod
    def from_url(cls, url: str, store: str | None) -> Queue:
        """``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db``
        absolute."""
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"bad SQLite URL {url!r}: use sqlite:///file.db or sqlite:////abs/path.db"
            )
        return cls(rest[1:])

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailspool-sqlite")
        self._db: sqlite3.Connection | None = None
        self._suppressions = SQLiteSuppressionList(self._run)
        self._returns: SQLiteReturnLog | None = None  # made when asked for: send needs none
        self._events = SQLiteEventLog(self._run)

    @property
    def suppressions(self) -> SQLiteSuppressionList:
        """The table ``suppressions`` of the same file, on the queue's thread."""
        return self._suppressions

    @property
    def returns(self) -> SQLiteReturnLog:
        """The tables ``returns`` and ``unmatched`` of the same file, on the queue's thread."""
        if self._returns is None:
            from mailspool.queue.sqlite.returns import SQLiteReturnLog

            self._returns = SQLiteReturnLog(self._run)
        return self._returns

    @property
    def events(self) -> SQLiteEventLog:
        """The tables ``events``, ``event_endpoints`` and ``event_pending`` of the same
        file, on the queue's thread; triggers write the events (schema.EVENTS)."""
        return self._events

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise QueueError("the SQLite queue is not open")
        try:
            with self._db:  # one transaction, committed or rolled back
                return fn(self._db)
        except sqlite3.Error as exc:
            raise QueueError(f"{self.path}: {exc}") from exc

    def _connect(self) -> None:
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            # large pages: a message is a few KB; takes effect on a new file
            db.execute("PRAGMA page_size = 16384")
            db.execute("PRAGMA cache_size = -49152")  # 48 MiB: most of the id index of 1M jobs
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit that returned survives power loss; recording "sent" relies on it
            db.execute("PRAGMA synchronous = FULL")
            open_schema(db)
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"cannot open the SQLite queue {self.path}: {exc}") from exc
        db.isolation_level = "IMMEDIATE"  # a write transaction from its first statement
        self._db = db

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=True)

    # -- producer side ----------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
        # Parameters are built here, on the caller's thread: the SQLite thread then runs
        # only C code (multi-row INSERTs run without the GIL), so a producer renders the
        # next batch while this one is written.
        now = time.time()
        chunks = insert_chunks(jobs, now)

        def _tx(db: sqlite3.Connection) -> dict[str, tuple[int, str, float]] | None:
            if insert_new(db, chunks) == len(jobs):
                return None  # all new: the common case needs no look-up
            return existing_rows(db, [j.id for j in jobs])

        found = await self._run(_tx)
        if found is None:
            return [added(j) for j in jobs]
        results = []
        seen: set[str] = set()
        for j in jobs:
            row, state, updated = found[j.id]
            if j.id in seen:
                results.append(Enqueued.DUPLICATE)  # the same key twice in this batch
            elif updated == now and row == j.row:
                results.append(added(j))  # inserted by this call
            else:
                results.append(resumed(row, state, j.row))
            seen.add(j.id)
        return results

    async def put_blob(self, digest: str, data: bytes) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)", (digest, data)
            )
        )

    async def get_blob(self, digest: str) -> bytes | None:
        def _q(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(_q)

    # -- consumer side ----------------------------------------------------------------

    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]:
        now = time.time()

        def _tx(db: sqlite3.Connection) -> list[Job]:
            found = control.claimable(db, campaign)  # in this transaction: no race
            if found is None:
                return []  # the campaign is paused
            head, scope, args = found
            # OR FAIL: see record (a claim fires the trigger that writes ambiguous events)
            sql = (
                f"{head}UPDATE OR FAIL jobs SET state = 'sending', lease_owner = ?,"
                " ready_at = ?, attempts = attempts + 1, updated_at = ?,"
                # a lease that expired: its worker may have delivered before dying
                " ambiguous = ambiguous + (state = 'sending')"
                f" WHERE seq IN (SELECT seq FROM jobs WHERE {scope}state IN {CLAIMABLE}"
                f" AND ready_at <= ? LIMIT ?) RETURNING {JOB_COLUMNS}"
            )
            params = [owner, now + lease, now, *args, now, limit]
            return [job_from_row(r) for r in db.execute(sql, params).fetchall()]

        return await self._run(_tx)

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        now = time.time()
        rows = [
            (
                o.state.value,
                o.not_before if o.state is State.DEFERRED else now,
                now,
                o.reply,
                final_reason(o),
                int(o.ambiguous),
                o.job_id,
                owner,
            )
            for o in outcomes
        ]
        # A trigger writes each outcome's event (schema.EVENTS). OR FAIL: a statement that
        # fires a trigger and may ABORT halfway has SQLite copy every page it touches to a
        # statement journal first, for each row (a third of the speed); this transaction
        # is rolled back whole on any error anyway.
        sql = (
            "UPDATE OR FAIL jobs SET state = ?, ready_at = ?, updated_at = ?, last_reply = ?,"
            " dead_reason = ?, ambiguous = ambiguous + ?, lease_owner = NULL"
            " WHERE id = ? AND lease_owner = ? AND state = 'sending'"
        )

        def _tx(db: sqlite3.Connection) -> int:
            return db.executemany(sql, rows).rowcount

        return await self._run(_tx)

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        until = time.time() + lease
        rows = [(until, jid, owner) for jid in job_ids]
        await self._run(
            lambda db: db.executemany(
                "UPDATE jobs SET ready_at = ? WHERE id = ? AND lease_owner = ?"
                " AND state = 'sending'",
                rows,
            )
        )

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None:
        due = not_before or time.time()
        deferred = (
            "'deferred'"
            if not_before
            else "CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END"
        )
        rows = [(due, reply, jid, owner) for jid in job_ids]
        await self._run(
            lambda db: db.executemany(
                f"UPDATE jobs SET state = {deferred}, ready_at = ?,"
                " last_reply = COALESCE(?, last_reply), attempts = attempts - 1,"
                " lease_owner = NULL WHERE id = ? AND lease_owner = ? AND state = 'sending'",
                rows,
            )
        )

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        scope, args = ("campaign = ? AND ", [campaign]) if campaign else ("", [])
        sql = f"SELECT DISTINCT lease_owner FROM jobs WHERE {scope}state = 'sending'"
        return await self._run(lambda db: [r[0] for r in db.execute(sql, args) if r[0]])

    async def release_owner(self, owner: str) -> int:
        now = time.time()
        return await self._run(
            lambda db: (
                db.execute(
                    f"UPDATE jobs SET state = {HANDED_BACK}, ambiguous = ambiguous + 1,"
                    " ready_at = ?, lease_owner = NULL WHERE lease_owner = ? AND state = 'sending'",
                    (now, owner),
                ).rowcount
            )
        )

    # -- inspection -------------------------------------------------------------------

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        scope, args = ("WHERE campaign = ?", [campaign]) if campaign else ("", [])

        def _q(db: sqlite3.Connection) -> CampaignStats:
            st = CampaignStats(campaign)
            for state, n, amb in db.execute(
                f"SELECT state, count(*), sum(ambiguous) FROM jobs {scope} GROUP BY state", args
            ):
                st.counts[state] = n
                st.ambiguous += amb or 0
            and_scope = "campaign = ? AND " if campaign else ""
            row = db.execute(
                f"SELECT min(ready_at) FROM jobs WHERE {and_scope}state IN {CLAIMABLE}", args
            ).fetchone()
            st.next_due = row[0] if row else None
            row = db.execute(
                f"SELECT last_reply FROM jobs WHERE {and_scope}state = 'deferred'"
                " AND last_reply != '' ORDER BY ready_at DESC LIMIT 1",
                args,
            ).fetchone()
            st.last_error = row[0] if row else ""
            return st

        return await self._run(_q)

    async def get(self, job_id: str) -> Job | None:
        def _q(db: sqlite3.Connection) -> Job | None:
            r = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return job_from_row(r) if r else None

        return await self._run(_q)

    async def campaigns(self) -> list[str]:
        return await self._run(
            lambda db: [r[0] for r in db.execute("SELECT DISTINCT campaign FROM jobs ORDER BY 1")]
        )

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO campaigns (name, settings) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                (campaign, json.dumps(settings)),
            )
        )

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        def _q(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute(
                "SELECT settings FROM campaigns WHERE name = ?", (campaign,)
            ).fetchone()
            return dict(json.loads(row[0])) if row else {}

        return await self._run(_q)

    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange:
        now = time.time()
        return await self._run(lambda db: control.set_state(db, campaign, state, now))

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        names = None if campaigns is None else list(campaigns)
        return await self._run(lambda db: control.states(db, names))

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        where, args = dead_where(flt)
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY updated_at LIMIT ?"
        return await self._run(
            lambda db: [job_from_row(r) for r in db.execute(sql, [*args, limit])]
        )

    async def retry_dead(self, flt: DeadFilter) -> int:
        where, args = dead_where(flt)
        now = time.time()
        sql = (
            "UPDATE jobs SET state = 'queued', ready_at = ?, attempts = 0, dead_reason = '',"
            f" updated_at = ? WHERE {where}"
        )
        return await self._run(lambda db: db.execute(sql, [now, now, *args]).rowcount)

    async def purge_dead(self, flt: DeadFilter) -> int:
        where, args = dead_where(flt)

        def _tx(db: sqlite3.Connection) -> int:
            db.execute(
                f"DELETE FROM bodies WHERE seq IN (SELECT seq FROM jobs WHERE {where})", args
            )
            return int(db.execute(f"DELETE FROM jobs WHERE {where}", args).rowcount)

        return await self._run(_tx)
