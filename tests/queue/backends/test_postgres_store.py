"""The PostgreSQL job store's own layout: messages stored packed, a table from before
that read as it was written, a damaged message reported with its job, events added to a
schema from before them and read in an order that skips none committed late; campaign
control added to a schema from before it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailspool.models import CampaignState, Outcome, State
from mailspool.queue import PostgresStore
from mailspool.queue.events import EventType
from mailspool.queue.packing import Packed, pack

# the store's own tables and statements, which these tests look into
from mailspool.queue.postgres.schema import DDL, EVENTS_DDL, JOB_EVENT_FN, record_sql
from tests.support.jobs import make_job
from tests.support.services import POSTGRES_URL, need, port_open

# an open transaction anywhere in the database holds back reading events (by design):
# run alone, after the parallel part of make test, where no other test holds one
pytestmark = pytest.mark.serial

asyncpg = pytest.importorskip("asyncpg")

MESSAGE = b"Subject: hi\r\n\r\n" + b"the same line of a long template, again\r\n" * 60


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    need(port_open(5432), "PostgreSQL (127.0.0.1:5432)")
    name = f"mstest_{uuid.uuid4().hex[:12]}"
    yield name
    con = await asyncpg.connect(POSTGRES_URL)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await con.close()


async def sql(query: str, *args: Any) -> list[Any]:
    con = await asyncpg.connect(POSTGRES_URL)
    try:
        if not args:  # a script of several statements
            await con.execute(query)
            return []
        rows: list[Any] = await con.fetch(query, *args)
        return rows
    finally:
        await con.close()


async def opened(schema: str) -> PostgresStore:
    store = PostgresStore(f"{POSTGRES_URL}?schema={schema}")
    await store.open()
    return store


async def test_messages_are_stored_packed_and_claimed_as_they_were(schema: str) -> None:
    store = await opened(schema)
    try:
        plain = dataclasses.replace(make_job(1), message=MESSAGE)
        # what a render process hands over: packed already, stored as it is
        prepacked = dataclasses.replace(make_job(2), message=Packed(pack(MESSAGE + b"2")))
        await store.insert([plain, prepacked])
        query = f"SELECT message, packed_message FROM {schema}.jobs WHERE $1 ORDER BY id"
        rows = await sql(query, True)
        # no plain message: a mailspool from before packing fails on these rows instead
        # of sending the packed bytes
        assert [r["message"] for r in rows] == [None, None]
        assert len(rows[0]["packed_message"]) < len(MESSAGE) / 4
        assert bytes(rows[1]["packed_message"]) == prepacked.message
        claimed = await store.claim_ids("w1", [plain.id, prepacked.id], 60.0, "c1")
        assert {j.id: j.message for j in claimed} == {
            plain.id: MESSAGE,
            prepacked.id: MESSAGE + b"2",
        }
        got = await store.get(plain.id)
        assert got is not None and got.message == MESSAGE
    finally:
        await store.close()


async def test_a_table_from_before_packing_keeps_its_plain_messages(schema: str) -> None:
    earlier = DDL.replace("message bytea,", "message bytea NOT NULL,").replace(
        ",\n    packed_message bytea", ""
    )
    assert "packed" not in earlier and "message bytea NOT NULL" in earlier
    await sql(earlier.format(s=schema))
    await sql(
        f'INSERT INTO {schema}.jobs (id, campaign, key, "row", message_id, sender,'
        " recipients, message, state, ready_at, created_at, updated_at)"
        " VALUES ('old-1', 'c1', 'k', 2, '<old-1@example.com>', 'a@example.com',"
        " 'b@example.com', $1, 'queued', 0, 0, 0)",
        MESSAGE,
    )
    store = await opened(schema)
    try:
        await store.insert([dataclasses.replace(make_job(1), message=MESSAGE)])
        claimed = await store.claim_due("w1", 10, 60.0, "c1", (State.QUEUED,))
        assert sorted((j.id, j.message) for j in claimed) == [
            ("c1-00001", MESSAGE),
            ("old-1", MESSAGE),
        ]
        query = f"SELECT id, message IS NULL AS packed FROM {schema}.jobs WHERE $1 ORDER BY id"
        rows = await sql(query, True)
        assert [(r["id"], r["packed"]) for r in rows] == [("c1-00001", True), ("old-1", False)]
    finally:
        await store.close()
    # opened again: the column is there, nothing changes
    store = await opened(schema)
    await store.close()


async def test_a_damaged_message_is_claimed_marked_unreadable(schema: str) -> None:
    store = await opened(schema)
    try:
        await store.insert([dataclasses.replace(make_job(i), message=MESSAGE) for i in (7, 8)])
        await sql(
            f"UPDATE {schema}.jobs SET packed_message = '\\x00ff'::bytea WHERE id = 'c1-00007'"
        )
        got = {j.id: j for j in await store.claim_ids("w1", ["c1-00007", "c1-00008"], 60.0, "c1")}
        assert "its stored message cannot be read" in got["c1-00007"].unreadable
        assert (got["c1-00008"].unreadable, got["c1-00008"].message) == ("", MESSAGE)
    finally:
        await store.close()


async def test_outcomes_find_their_rows_by_id_on_a_table_never_analyzed(schema: str) -> None:
    """A new store has no statistics: recording a batch must still look its jobs up by
    id, not scan every leased job for each batch."""
    store = await opened(schema)
    try:
        await store.insert([make_job(i) for i in range(5000)])
        await store.claim_due("w1", 1000, 60.0, "c1", (State.QUEUED,))
    finally:
        await store.close()
    con = await asyncpg.connect(POSTGRES_URL)
    try:
        await con.execute("SET plan_cache_mode = force_generic_plan")
        await con.execute(
            "PREPARE rec(text[], text[], float8[], text[], text[], int[], float8, text) AS "
            + record_sql(f"{schema}.jobs")
        )
        plan = "\n".join(
            r[0]
            for r in await con.fetch(
                "EXPLAIN EXECUTE rec('{c1-00001}', '{sent}', '{0}', '{ok}', '{\"\"}', '{0}',"
                " 0, 'w1')"
            )
        )
    finally:
        await con.close()
    assert "jobs_pkey" in plan and "jobs_due" not in plan and "Seq Scan on jobs" not in plan, plan


async def test_a_schema_from_before_events_gets_their_tables_and_triggers(schema: str) -> None:
    earlier = DDL[: DDL.index(EVENTS_DDL.strip())]
    assert "events" not in earlier
    await sql(earlier.format(s=schema))
    store = await opened(schema)
    try:
        await store.insert([make_job(1)])
        await store.claim_due("w1", 10, 60.0, "c1", (State.QUEUED,))
        assert await store.record("w1", [Outcome("c1-00001", State.SENT, "250 ok")]) == 1
        assert [e.type for e in await store.events.read()] == [EventType.SENT]
    finally:
        await store.close()
    store = await opened(schema)  # opened again: nothing to add
    await store.close()


async def test_an_event_committed_late_is_read_after_a_younger_one(schema: str) -> None:
    """Cursors are not in commit order: an event of a transaction still open stops
    every younger event from being read, so that a poller moving on misses none."""
    store = await opened(schema)
    older = await asyncpg.connect(POSTGRES_URL)
    try:
        await store.insert([make_job(1)])
        await store.claim_due("w1", 10, 60.0, "c1", (State.QUEUED,))
        tx = older.transaction()
        await tx.start()
        await older.execute("SELECT pg_current_xact_id()")  # its transaction id: the older
        await store.record("w1", [Outcome("c1-00001", State.SENT, "250 ok")])  # committed
        assert await store.events.read() == [] and await store.events.head() is None
        await older.execute(
            f"INSERT INTO {schema}.suppressions (address, list, reason, source, created_at)"
            " VALUES ('u@example.com', '', 'unsubscribed', 'link', 0)"
        )
        await tx.commit()
        got = await store.events.read()
        assert [e.type for e in got] == [EventType.UNSUBSCRIBED, EventType.SENT]
        assert await store.events.read(got[0].cursor) == got[1:]
        assert await store.events.head() == got[1].cursor
    finally:
        await older.close()
        await store.close()


async def test_a_schema_from_before_campaign_control_gets_it(schema: str) -> None:
    """The campaigns' state column, and the job event trigger that writes no event for a
    job a worker records cancelled."""
    campaigns = (
        "CREATE TABLE IF NOT EXISTS {s}.campaigns (\n    name text PRIMARY KEY,\n"
        "    settings text NOT NULL,\n    state text NOT NULL DEFAULT 'active'\n);"
    )
    old_event = JOB_EVENT_FN.replace("NOT IN ('sending', 'cancelled')", "<> 'sending'")
    assert campaigns in DDL and old_event != JOB_EVENT_FN
    before = DDL.replace(
        campaigns,
        "CREATE TABLE IF NOT EXISTS {s}.campaigns (name text PRIMARY KEY, settings text NOT NULL);",
    ).replace(JOB_EVENT_FN.strip(), old_event.strip())
    await sql(before.format(s=schema))
    for _ in range(2):  # opened again: up to date, nothing changes
        store = await opened(schema)
        try:
            await store.insert([make_job(1), make_job(2)])
            await store.set_campaign_state("c1", CampaignState.PAUSED)
            assert await store.claim_due("w", 10, 60.0, None, (State.QUEUED,)) == []
            await store.set_campaign_state("c1", CampaignState.ACTIVE)
        finally:
            await store.close()
    store = await opened(schema)
    try:
        (job,) = await store.claim_due("w", 1, 60.0, "c1", (State.QUEUED,))
        change, _ = await store.set_campaign_state("c1", CampaignState.CANCELLED)
        assert change.cancelled == 1
        cancelled = Outcome(job.id, State.CANCELLED, "campaign cancelled")
        assert await store.record("w", [cancelled]) == 1
        assert await store.events.read() == []  # nor one of a type webhooks do not know
    finally:
        await store.close()
