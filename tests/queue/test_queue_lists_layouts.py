"""Mailing lists and suppressions in each backend's own layout, beyond the contract: stores
written before lists (an SQLite file, a PostgreSQL schema, Redis job hashes) read as the
default list and get a suppression list when opened; a suppressed job never reaches the
Redis stream, the Redis store's due index nor the RabbitMQ broker; the batch check is
one query (one statement, one round trip) whatever its size; the Redis list's indexes
keep no entry that is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.models import Enqueued, Job, State
from mailspool.queue import JobStore, RabbitMQQueue, SQLiteQueue, make_store

# the schema modules: the backends' own layouts, which these tests look into
from mailspool.queue.postgres.schema import DDL, EVENTS_DDL, SUPPRESSIONS_DDL
from mailspool.queue.sqlite.schema import SCHEMA, SUPPRESSIONS
from mailspool.queue.suppression import Reason, Suppression, SuppressionList
from tests.support.jobs import make_job, suppressed
from tests.support.services import POSTGRES_URL, RabbitMQNamespace, need, port_open
from tests.support.sqlite_files import earlier_file

T0 = 1_700_000_000.0


def entry(
    address: str, list_name: str | None = None, expires_at: float | None = None
) -> Suppression:
    return Suppression(address, list_name, Reason.MANUAL, "test", T0, expires_at)


def batch(n: int) -> list[str]:
    """What the producer checks at once: n recipients, some of them suppressed below."""
    return [f"user{i}@corp{i % 50}.example" for i in range(n)]


async def check_batch(s: SuppressionList) -> set[str]:
    await s.add([entry(f"user{i}@corp{i % 50}.example", "news") for i in range(0, 4000, 400)])
    await s.add([entry("@corp7.example")])
    return await s.suppressed(batch(4000), "news", T0)


EXPECTED = {f"user{i}@corp{i % 50}.example" for i in range(0, 4000, 400)} | {
    f"user{i}@corp7.example" for i in range(7, 4000, 50)
}


# -- SQLite ------------------------------------------------------------------------------------

# the layout before lists: no list_name column, no suppressions table
SQLITE_BEFORE = SCHEMA.replace(",\n    list_name TEXT NOT NULL DEFAULT ''", "").replace(
    SUPPRESSIONS, ""
)


async def test_an_old_sqlite_file_reads_as_the_default_list(tmp_path: Path) -> None:
    path = tmp_path / "before.db"
    db = sqlite3.connect(path)
    db.executescript(SQLITE_BEFORE)
    db.execute(
        "INSERT INTO jobs (seq, id, campaign, key, row, message_id, sender, recipients, state,"
        " ready_at, created_at, updated_at) VALUES (1, 'old', 'c1', 'k', 2, '<old@example.com>',"
        " 'a@example.com', 'b@example.com', 'queued', 0, 1, 1)"
    )
    db.execute("INSERT INTO bodies (seq, message) VALUES (1, x'')")
    db.commit()
    db.close()
    for _ in range(2):  # opened again: already up to date, nothing changes
        q = SQLiteQueue(path)
        await q.open()
        try:
            got = await q.get("old")
            assert got is not None and (got.list_name, got.state) == ("", State.QUEUED)
            assert await q.enqueue([dataclasses.replace(make_job(1), list_name="news")]) in (
                [Enqueued.NEW],
                [Enqueued.PENDING],
            )
            assert await check_batch(q.suppressions) == EXPECTED
        finally:
            await q.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT id, list_name FROM jobs ORDER BY seq").fetchall()
    assert rows == [("old", ""), ("c1-00001", "news")]
    db.close()


async def test_the_oldest_sqlite_layouts_get_a_suppression_list(tmp_path: Path) -> None:
    path = tmp_path / "oldest.db"
    earlier_file(path, ("queued", "sent"), messages_table=False)
    q = SQLiteQueue(path)
    await q.open()
    try:
        got = await q.get("id0")
        assert got is not None and got.list_name == ""
        assert await check_batch(q.suppressions) == EXPECTED
    finally:
        await q.close()


async def test_the_sqlite_batch_check_is_one_statement(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    try:
        await q.enqueue([make_job(1)])
        statements: list[str] = []
        assert q._db is not None
        q._db.set_trace_callback(statements.append)
        try:
            found = await check_batch(q.suppressions)
        finally:
            q._db.set_trace_callback(None)
        assert found == EXPECTED
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 1, reads
    finally:
        await q.close()


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture(params=["queue", "store"])
async def redis_holder(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Any]:
    """The Redis queue, then the Redis job store, under a prefix of the test's own."""
    from mailspool.queue import RedisJobStore, RedisQueue

    holder: Any = RedisQueue(redis_url) if request.param == "queue" else RedisJobStore(redis_url)
    await holder.open()
    yield holder
    await holder.close()


def client(holder: Any) -> Any:
    return getattr(holder, "_shared", holder).redis


async def add_jobs(holder: Any, jobs: list[Job]) -> list[Enqueued]:
    if isinstance(holder, JobStore):
        results, _ = await holder.insert(jobs)
        return results
    return list(await holder.enqueue(jobs))


async def test_a_suppressed_job_is_never_on_the_stream_or_due(redis_holder: Any) -> None:
    r, p = client(redis_holder), redis_holder.prefix
    jobs = [suppressed(make_job(i)) for i in range(3)]
    later = dataclasses.replace(make_job(9), not_before=time.time() + 3600)
    assert await add_jobs(redis_holder, [*jobs, suppressed(later)]) == [Enqueued.SUPPRESSED] * 4
    keys = {k.decode() async for k in r.scan_iter(match=f"{p}:*")}
    assert not {f"{p}:delayed:c1", f"{p}:due:c1:queued", f"{p}:due:c1:deferred"} & keys
    if f"{p}:stream:c1" in keys:
        assert await r.xlen(f"{p}:stream:c1") == 0
    assert await r.zcard(f"{p}:active") == 0
    assert await r.hget(f"{p}:counts:c1", "suppressed") == b"4"


async def test_a_redis_job_from_before_lists_is_on_the_default_list(redis_holder: Any) -> None:
    r, p = client(redis_holder), redis_holder.prefix
    await add_jobs(redis_holder, [dataclasses.replace(make_job(1), list_name="news")])
    assert await r.hget(f"{p}:job:c1-00001", "list_name") == b"news"
    await r.hdel(f"{p}:job:c1-00001", "list_name")  # as written before lists
    got = await redis_holder.get("c1-00001")
    assert got is not None and got.list_name == ""
    if isinstance(redis_holder, JobStore):
        (claimed,) = await redis_holder.claim_ids("w", ["c1-00001"], 30, None)
    else:
        (claimed,) = await redis_holder.claim("w", 1, 30)
    assert claimed.list_name == ""


async def test_the_redis_keys_of_the_suppression_list(redis_holder: Any) -> None:
    r, p = client(redis_holder), redis_holder.prefix
    s = redis_holder.suppressions
    await s.add(
        [
            entry("ann@example.com", "news"),
            entry("ann@example.com"),
            entry("@example.org", "news", expires_at=T0 + 10),
        ]
    )
    assert set(await r.hkeys(f"{p}:supp:h:news")) == {b"ann@example.com", b"@example.org"}
    assert set(await r.hkeys(f"{p}:supp:h:")) == {b"ann@example.com"}
    assert await r.zrange(f"{p}:supp:all", 0, -1) == [
        b"@example.org\0news",
        b"ann@example.com\0",
        b"ann@example.com\0news",
    ]
    assert await r.zrange(f"{p}:supp:exp", 0, -1, withscores=True) == [
        (b"@example.org\0news", T0 + 10)
    ]
    # made permanent, then gone: the indexes keep nothing of it
    await s.add([entry("@example.org", "news")])
    assert await r.zcard(f"{p}:supp:exp") == 0
    assert await s.remove(["ann@example.com", "@example.org"], "news") == 2
    await s.add([entry("bob@example.com", "news", expires_at=T0 + 10)])
    assert await s.purge_expired(T0 + 10) == 1
    assert await s.remove(["ann@example.com"], None) == 1
    left = [k async for k in r.scan_iter(match=f"{p}:supp:*")]
    assert left == []


async def test_a_redis_page_goes_on_past_a_calls_budget(
    redis_holder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's script looks at a few index members a call (Redis serves nothing else
    meanwhile): the page is filled by as many calls as it takes, in order."""
    from mailspool.queue.redis import suppressions as module

    monkeypatch.setattr(module, "PAGE_BUDGET", 3)
    s = redis_holder.suppressions
    added = await s.add(
        [
            Suppression(f"u{i:02d}@example.com", "news", reason, "test", T0)
            for i in range(20)
            for reason in [Reason.BOUNCED if i % 4 == 0 else Reason.MANUAL]
        ]
    )
    bounced = [e for e in added if e.reason is Reason.BOUNCED]
    first = await s.entries("news", Reason.BOUNCED, limit=4)
    assert first == bounced[:4]
    assert await s.entries("news", Reason.BOUNCED, limit=4, after=first[-1].position) == [
        bounced[4]
    ]
    assert await s.entries(limit=7) == added[:7]
    assert await s.entries(None, Reason.BOUNCED) == []


async def test_the_redis_batch_check_is_one_round_trip(redis_holder: Any) -> None:
    calls = counting(getattr(redis_holder, "_shared", redis_holder).reconnect)
    found = await check_batch(redis_holder.suppressions)
    assert found == EXPECTED
    assert calls[-1] == "suppressions match" and calls.count("suppressions match") == 1


def counting(reconnect: Any) -> list[str]:
    """The operations ``reconnect`` runs from now on, by name (each one round trip: a
    script, or a pipeline)."""
    calls: list[str] = []
    real = reconnect.run

    async def run(what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        calls.append(what)
        return await real(what, fn)

    reconnect.run = run
    return calls


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    asyncpg = pytest.importorskip("asyncpg")
    need(port_open(5432), "PostgreSQL (127.0.0.1:5432)")
    name = f"mstest_{uuid.uuid4().hex[:12]}"
    yield name
    con = await asyncpg.connect(POSTGRES_URL)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await con.close()


async def pg(sql: str, *args: Any) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(POSTGRES_URL)
    try:
        if not args:
            await con.execute(sql)
            return []
        return list(await con.fetch(sql, *args))
    finally:
        await con.close()


async def test_a_postgres_schema_from_before_lists_gets_them(pg_schema: str) -> None:
    # a schema from before lists predates the job events too (they trigger on suppressions)
    before = (
        DDL.replace(",\n    list_name text NOT NULL DEFAULT ''", "")
        .replace(SUPPRESSIONS_DDL.strip(), "")
        .replace(EVENTS_DDL.strip(), "")
    )
    assert "list_name" not in before and "suppressions" not in before
    await pg(before.format(s=pg_schema))
    await pg(
        f'INSERT INTO {pg_schema}.jobs (id, campaign, key, "row", message_id, sender,'
        " recipients, message, state, ready_at, created_at, updated_at) VALUES ('old', 'c1',"
        " 'k', 2, '<old@example.com>', 'a@example.com', 'b@example.com', $1, 'queued', 0, 0, 0)",
        b"Subject: hi\r\n\r\nold\r\n",
    )
    url = f"{POSTGRES_URL}?schema={pg_schema}"
    for _ in range(2):  # opened again: up to date, nothing changes
        store = make_store(url)
        await store.open()
        try:
            got = await store.get("old")
            assert got is not None and got.list_name == ""
            await store.insert([dataclasses.replace(make_job(1), list_name="news")])
            got = await store.get("c1-00001")
            assert got is not None and got.list_name == "news"
            assert await check_batch(store.suppressions) == EXPECTED
        finally:
            await store.close()
    rows = await pg(f"SELECT id, list_name FROM {pg_schema}.jobs WHERE $1 ORDER BY id", True)
    assert [(r["id"], r["list_name"]) for r in rows] == [("c1-00001", "news"), ("old", "")]


async def test_the_postgres_batch_check_is_one_statement(pg_schema: str) -> None:
    store = make_store(f"{POSTGRES_URL}?schema={pg_schema}")
    await store.open()
    try:
        await check_batch(store.suppressions)  # filled
        statements: list[str] = []
        real = store._call  # type: ignore[attr-defined]

        def logged(record: Any) -> None:
            statements.append(record.query)

        async def call(fn: Callable[[Any], Awaitable[Any]]) -> Any:
            async def traced(con: Any) -> Any:
                con.add_query_logger(logged)
                try:
                    return await fn(con)
                finally:
                    con.remove_query_logger(logged)

            return await real(traced)

        store.suppressions._call = call  # type: ignore[attr-defined]
        assert await store.suppressions.suppressed(batch(4000), "news", T0) == EXPECTED
        await asyncio.sleep(0.01)  # asyncpg calls its query loggers soon, not at once
        assert len(statements) == 1 and statements[0].startswith("SELECT"), statements
    finally:
        await store.close()


# -- RabbitMQ ------------------------------------------------------------------------------------


@pytest.fixture(params=["rabbitmq", "rabbitmq_redis"])
def ns(request: pytest.FixtureRequest) -> RabbitMQNamespace:
    found: RabbitMQNamespace = request.getfixturevalue(request.param)
    return found


async def announced(ns: RabbitMQNamespace) -> list[list[str]]:
    """The job ids of each announcement waiting in the work queue (taken off it)."""
    import aio_pika

    found: list[list[str]] = []
    async with await aio_pika.connect(ns.amqp()) as conn:
        ch = await conn.channel()
        work = await ch.declare_queue(f"{ns.prefix}.work", passive=True)
        while (message := await work.get(no_ack=True, fail=False)) is not None:
            found.append(message.body.decode().split("\n"))
    return found


async def test_suppressed_jobs_are_never_announced(ns: RabbitMQNamespace) -> None:
    q = RabbitMQQueue(url=ns.amqp(), store=ns.store)
    await q.open()
    try:
        jobs = [suppressed(make_job(i)) for i in range(3)]
        assert await q.enqueue(jobs) == [Enqueued.SUPPRESSED] * 3
        await q.enqueue([make_job(7), suppressed(make_job(8))])
    finally:
        await q.close()  # waits for the announcements' confirmations
    assert await announced(ns) == [["c1-00007"]]


async def test_a_store_makes_no_suppressed_job_due(ns: RabbitMQNamespace) -> None:
    store = make_store(ns.store)
    await store.open()
    try:
        results, due = await store.insert([suppressed(make_job(5)), make_job(6)])
        assert results == [Enqueued.SUPPRESSED, Enqueued.NEW]
        assert [r.id for r in due] == ["c1-00006"]
        assert await store.queued(["c1-00005", "c1-00006"]) == due
        claimed = await store.claim_due("w", 10, 30, None, (State.QUEUED, State.DEFERRED))
        assert [j.id for j in claimed] == ["c1-00006"]
        assert await store.claim_ids("w", ["c1-00005"], 30, None) == []
    finally:
        await store.close()
