"""The job store in PostgreSQL, with asyncpg.

``postgresql://user[:password]@host[:port]/database[?schema=mailspool&pool=5]``: the
tables live in their own schema (created when missing, ``mailspool`` by default), so that
several deployments (or test runs) can share one database. Every other query parameter is
passed to asyncpg (``sslmode=...``, ``application_name=...``).

Each call is one statement (one transaction): a batch of inserts, claims or outcomes costs
one commit, whatever its size. Leases are compared with the clock of the process that
claims, as in the SQLite queue: keep the workers' clocks synchronised (NTP).

The suppression list is the table ``suppressions`` of the same schema
(:mod:`mailspool.queue.postgres.suppressions`); returned mail, the tables ``returns`` and
``unmatched`` (:mod:`mailspool.queue.postgres.returns`); job events, the tables
``events``, ``endpoints`` and ``pending``, the events written by triggers in the
transaction of their change (:mod:`mailspool.queue.postgres.events`: PostgreSQL 14 or
later). A schema made by an earlier version gets what it lacks when first opened (the
``packed_message`` and ``list_name`` columns, the suppressions table, the returned-mail
tables and the jobs' index on ``message_id``, the event tables and their triggers): that
needs the owner of the tables (docs/distributed.md, Upgrading).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailspool.errors import MissingExtra, QueueError
from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
    attachments_json,
)
from mailspool.queue.base import DeadFilter, added, final_reason, resumed
from mailspool.queue.packing import stored_form
from mailspool.queue.postgres import campaigns as control
from mailspool.queue.postgres.events import PostgresEventLog
from mailspool.queue.postgres.returns import PostgresReturnLog
from mailspool.queue.postgres.schema import (
    CLAIMABLE_VALUES,
    HANDED_BACK,
    JOB_COLUMNS,
    claim_ids_sql,
    create_or_upgrade,
    dead_where,
    extend_sql,
    insert_sql,
    job_from_row,
    parse_store_url,
    record_sql,
    refs_from_rows,
)
from mailspool.queue.postgres.suppressions import PostgresSuppressionList
from mailspool.queue.store import JobStore, Ref
from mailspool.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["PostgresStore"]

DEADLOCK_RETRIES = 5


class PostgresStore(JobStore):
    """Every role of :class:`JobStore` in a PostgreSQL database, for the RabbitMQ queue
    (see the module docstring). ``url``: ``postgresql://`` (or ``postgres://``), with the
    ``schema`` and ``pool`` options above; asyncpg (the ``postgres`` extra) is needed."""

    # a fifth of the bytes to write, send and read back, and none for the server to
    # compress (a packed message stays under its TOAST threshold)
    packs_messages = True

    def __init__(self, url: str) -> None:
        try:
            import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
        except ImportError as exc:
            raise MissingExtra("postgres", "asyncpg") from exc
        self._asyncpg: Any = asyncpg
        self._dsn, self.schema, self._pool_size = parse_store_url(url)
        self.url = redact_url(url)
        self._pool: Any = None
        self._t = f"{self.schema}.jobs"
        self._insert_sql = insert_sql(self._t)
        self._record_sql = record_sql(self._t)
        self._extend_sql = extend_sql(self._t)
        self._suppressions = PostgresSuppressionList(self._call, f"{self.schema}.suppressions")
        self._returns = PostgresReturnLog(self._call, self.schema)
        self._events = PostgresEventLog(self._call, self.schema)

    @property
    def suppressions(self) -> PostgresSuppressionList:
        """The table ``suppressions`` of the store's schema, on the store's pool."""
        return self._suppressions

    @property
    def returns(self) -> PostgresReturnLog:
        """The tables ``returns`` and ``unmatched`` of the store's schema, on its pool."""
        return self._returns

    @property
    def events(self) -> PostgresEventLog:
        """The tables ``events``, ``endpoints`` and ``pending`` of the store's schema (the
        events written by triggers on the jobs, returns and suppressions), on its pool."""
        return self._events

    # -- plumbing -------------------------------------------------------------------

    async def _call(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``fn(connection)`` (one transaction); database and connection errors become
        QueueError. A transaction the server aborted to break a deadlock (two processes
        leasing the same jobs) changed nothing: it is run again."""
        pg = self._asyncpg
        for attempt in range(DEADLOCK_RETRIES + 1):
            if self._pool is None:
                raise QueueError("the PostgreSQL job store is not open")
            try:
                async with self._pool.acquire() as con:
                    return await fn(con)
            except pg.DeadlockDetectedError as exc:
                if attempt == DEADLOCK_RETRIES:
                    raise QueueError(f"job store {self.url}: {exc}") from exc
                await asyncio.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            except (pg.PostgresError, pg.InterfaceError, OSError) as exc:
                raise QueueError(f"job store {self.url}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._call(lambda con: con.fetch(sql, *args))
        return rows

    async def open(self) -> None:
        pg = self._asyncpg
        try:
            con = await pg.connect(self._dsn)
            try:
                async with con.transaction():
                    # one process creates the tables; the others wait, then find them
                    await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._t)
                    await create_or_upgrade(con, self.schema)
            finally:
                await con.close()
            self._pool = await pg.create_pool(
                self._dsn,
                min_size=min(2, self._pool_size),
                max_size=self._pool_size,
                command_timeout=120,
                init=self._prepare,
                reset=_keep_session,
            )
        except (pg.PostgresError, pg.InterfaceError, OSError) as exc:
            raise QueueError(f"cannot open the job store {self.url}: {exc}") from exc

    async def _prepare(self, con: Any) -> None:
        """Prepare the frequent statements on a new connection (run each once, changing
        nothing): the first batch then goes out in one round trip, without waiting for
        a Parse to come back while the producer is busy rendering."""
        await con.fetch(self._insert_sql, *[[]] * 16)
        await con.fetch(self._record_sql, *[[]] * 6, 0.0, "")
        await con.fetch(claim_ids_sql(self.schema, False), "", 0.0, 0.0, [], [])
        await con.fetch(claim_ids_sql(self.schema, True), "", 0.0, 0.0, [], [], "")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- producer side ----------------------------------------------------------------

    async def insert(self, jobs: Sequence[Job]) -> tuple[list[Enqueued], list[Ref]]:
        # One statement in the common case (every job new), so that a producer renders
        # its next batch while the database writes this one; ids that existed already
        # are looked up afterwards.
        now = time.time()
        fresh: dict[str, Job] = {}
        for j in jobs:
            fresh.setdefault(j.id, j)
        cols: list[list[Any]] = [[] for _ in range(16)]
        for j in fresh.values():
            created = j.created_at or now
            state = State.DEFERRED if j.not_before > now else State.QUEUED
            if j.state is State.SUPPRESSED:
                state = State.SUPPRESSED  # final: stored, never due
            for col, value in zip(
                cols,
                (
                    j.id, j.campaign, j.key, j.row, j.message_id, j.sender,
                    "\n".join(j.recipients), stored_form(j.message), j.body_offset,
                    attachments_json(j.attachments), j.not_before or created, created, now,
                    state.value, j.list_name, j.timezone,
                ),
                strict=True,
            ):  # fmt: skip
                col.append(value)
        rows = await self._fetch(self._insert_sql, *cols)
        inserted = {r["id"] for r in rows}
        existing: dict[str, tuple[int, str]] = {}
        if len(inserted) < len(fresh):
            lost = [jid for jid in fresh if jid not in inserted]
            for r in await self._fetch(
                f'SELECT id, "row", state FROM {self._t} WHERE id = ANY($1::text[])', lost
            ):
                existing[r["id"]] = (r["row"], r["state"])
        results: list[Enqueued] = []
        seen: set[str] = set()
        for j in jobs:
            if j.id in seen:
                results.append(Enqueued.DUPLICATE)  # the same key twice in this batch
            elif j.id in inserted:
                results.append(added(j))
            elif j.id in existing:
                results.append(resumed(*existing[j.id], j.row))
            else:  # added and purged by another process in between
                results.append(Enqueued.DEAD)
            seen.add(j.id)
        due = [
            j
            for jid, j in fresh.items()
            if jid in inserted and j.not_before <= now and j.state is not State.SUPPRESSED
        ]
        return results, [Ref(j.id, j.campaign) for j in due]

    async def put_blob(self, digest: str, data: bytes) -> None:
        await self._call(
            lambda con: con.execute(
                f"INSERT INTO {self.schema}.blobs (digest, data) VALUES ($1, $2)"
                " ON CONFLICT (digest) DO NOTHING",
                digest,
                data,
            )
        )

    async def get_blob(self, digest: str) -> bytes | None:
        data = await self._call(
            lambda con: con.fetchval(
                f"SELECT data FROM {self.schema}.blobs WHERE digest = $1", digest
            )
        )
        return bytes(data) if data is not None else None

    # -- consumer side ----------------------------------------------------------------

    async def claim_ids(
        self, owner: str, ids: Sequence[str], lease: float, campaign: str | None
    ) -> list[Job]:
        if not ids:
            return []
        now = time.time()
        args: list[Any] = [owner, now + lease, now, sorted(ids), CLAIMABLE_VALUES]
        if campaign:
            args.append(campaign)
        rows = await self._fetch(claim_ids_sql(self.schema, bool(campaign)), *args)
        return [job_from_row(r) for r in rows]

    async def claim_due(
        self,
        owner: str,
        limit: int,
        lease: float,
        campaign: str | None,
        states: Sequence[State],
    ) -> list[Job]:
        now = time.time()
        rows: list[Any] = await self._call(
            lambda con: control.claim_due(
                con, self.schema, [owner, now + lease, now, limit], campaign, states
            )
        )
        return [job_from_row(r) for r in rows]

    async def has_due(self, campaign: str | None, states: Sequence[State]) -> bool:
        due: bool = await self._call(
            lambda con: control.has_due(con, self.schema, campaign, states, time.time())
        )
        return due

    async def exists(self, campaign: str) -> bool:
        sql = f"SELECT EXISTS (SELECT 1 FROM {self._t} WHERE campaign = $1)"
        return bool(await self._call(lambda con: con.fetchval(sql, campaign)))

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        if not outcomes:
            return 0
        now = time.time()
        first: dict[str, Outcome] = {}
        for o in outcomes:
            # one outcome per job: applied one by one, a later one would find the lease
            # already released and change nothing
            first.setdefault(o.job_id, o)
        todo = list(first.values())
        columns = (
            [o.job_id for o in todo],
            [o.state.value for o in todo],
            [o.not_before if o.state is State.DEFERRED else now for o in todo],
            [o.reply for o in todo],
            [final_reason(o) for o in todo],
            [int(o.ambiguous) for o in todo],
        )
        rows = await self._fetch(self._record_sql, *columns, now, owner)
        return len(rows)

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        if not job_ids:
            return
        until = time.time() + lease
        args = [(jid, until, owner) for jid in sorted(job_ids)]
        await self._call(lambda con: con.executemany(self._extend_sql, args))

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> list[Ref]:
        if not job_ids:
            return []
        state = "'deferred'" if not_before else HANDED_BACK
        sql = (
            f"UPDATE {self._t} SET state = {state}, ready_at = $2, attempts = attempts - 1,"
            " last_reply = COALESCE($4, last_reply), lease_owner = NULL"
            " WHERE id = $1 AND lease_owner = $3 AND state = 'sending' RETURNING id, campaign"
        )
        due = not_before or time.time()
        args = [(jid, due, owner, reply) for jid in sorted(job_ids)]
        rows = await self._call(lambda con: con.fetchmany(sql, args))
        return refs_from_rows(rows)

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        scope = " AND campaign = $1" if campaign else ""
        rows = await self._fetch(
            f"SELECT DISTINCT lease_owner FROM {self._t} WHERE state = 'sending'{scope}",
            *([campaign] if campaign else []),
        )
        return sorted(r["lease_owner"] for r in rows if r["lease_owner"])

    async def release_owner(self, owner: str) -> list[Ref]:
        rows = await self._fetch(
            f"UPDATE {self._t} SET state = {HANDED_BACK}, ready_at = $1, lease_owner = NULL,"
            " ambiguous = ambiguous + 1 WHERE lease_owner = $2 AND state = 'sending'"
            " RETURNING id, campaign",
            time.time(),
            owner,
        )
        return refs_from_rows(rows)

    async def queued(self, job_ids: Sequence[str]) -> list[Ref]:
        rows = await self._fetch(
            f"SELECT id, campaign FROM {self._t} WHERE id = ANY($1::text[])"
            " AND state IN ('queued', 'deferred') AND ready_at <= $2",
            list(job_ids),
            time.time(),
        )
        return refs_from_rows(rows)

    # -- inspection -------------------------------------------------------------------

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        scope, args = ("WHERE campaign = $1", [campaign]) if campaign else ("", [])
        and_scope = "campaign = $2 AND " if campaign else ""

        async def _q(con: Any) -> CampaignStats:
            st = CampaignStats(campaign)
            for r in await con.fetch(
                f"SELECT state, count(*) AS n, sum(ambiguous) AS amb FROM {self._t} {scope}"
                " GROUP BY state",
                *args,
            ):
                st.counts[r["state"]] = r["n"]
                st.ambiguous += r["amb"] or 0
            st.next_due = await con.fetchval(
                f"SELECT min(ready_at) FROM {self._t} WHERE {and_scope}state = ANY($1::text[])",
                CLAIMABLE_VALUES,
                *args,
            )
            st.last_error = (
                await con.fetchval(
                    f"SELECT last_reply FROM {self._t} WHERE {and_scope}state = $1"
                    " AND last_reply != '' ORDER BY ready_at DESC LIMIT 1",
                    State.DEFERRED.value,
                    *args,
                )
                or ""
            )
            return st

        result: CampaignStats = await self._call(_q)
        return result

    async def get(self, job_id: str) -> Job | None:
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM {self._t} WHERE id = $1", job_id)
        return job_from_row(rows[0]) if rows else None

    async def campaigns(self) -> list[str]:
        rows = await self._fetch(f"SELECT DISTINCT campaign FROM {self._t} ORDER BY 1")
        return [r["campaign"] for r in rows]

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        await self._call(
            lambda con: con.execute(
                f"INSERT INTO {self.schema}.campaigns (name, settings) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                campaign,
                json.dumps(settings),
            )
        )

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        text = await self._call(
            lambda con: con.fetchval(
                f"SELECT settings FROM {self.schema}.campaigns WHERE name = $1", campaign
            )
        )
        return dict(json.loads(text)) if text else {}

    async def set_campaign_state(
        self, campaign: str, state: CampaignState
    ) -> tuple[CampaignChange, list[Ref]]:
        now = time.time()
        changed: tuple[CampaignChange, list[Ref]] = await self._call(
            lambda con: control.set_state(con, self.schema, campaign, state, now)
        )
        return changed

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        found: dict[str, CampaignState] = await self._call(
            lambda con: control.states(con, self.schema, campaigns)
        )
        return found

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        where, args = dead_where(flt, 2)
        rows = await self._fetch(
            f"SELECT {JOB_COLUMNS} FROM {self._t} WHERE {where} ORDER BY updated_at LIMIT $1",
            limit,
            *args,
        )
        return [job_from_row(r) for r in rows]

    async def retry_dead(self, flt: DeadFilter) -> list[Ref]:
        where, args = dead_where(flt, 2)
        rows = await self._fetch(
            f"UPDATE {self._t} SET state = 'queued', ready_at = $1, attempts = 0,"
            f" dead_reason = '', updated_at = $1 WHERE {where} RETURNING id, campaign",
            time.time(),
            *args,
        )
        return refs_from_rows(rows)

    async def purge_dead(self, flt: DeadFilter) -> int:
        where, args = dead_where(flt, 1)
        rows = await self._fetch(f"DELETE FROM {self._t} WHERE {where} RETURNING id", *args)
        return len(rows)


async def _keep_session(con: Any) -> None:
    """Nothing to reset when a connection goes back to the pool: the store changes no
    session state (a transaction left open is rolled back by asyncpg itself). The default
    reset costs a round trip after every statement."""
