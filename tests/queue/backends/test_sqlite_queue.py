"""The SQLite queue's file: messages apart from the job rows (compressed, keyed by the
job's sequence number), and files from the two layouts before that; a file from before
campaign control."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailspool.models import CampaignState, Enqueued, Job, Outcome, State
from mailspool.queue import DeadFilter, SQLiteQueue
from mailspool.queue.packing import unpack

# the file's own layout, which a test here writes as an earlier version did
from mailspool.queue.sqlite.schema import EVENTS, SCHEMA
from tests.support.jobs import make_job
from tests.support.sqlite_files import earlier_file, stored_job


async def test_a_file_from_before_the_messages_table_resumes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    earlier_file(path, ("queued", "sent", "dead"), messages_table=False)

    q = SQLiteQueue(path)
    await q.open()
    try:
        (claimed,) = await q.claim("w", 10, 60)
        assert (claimed.id, claimed.message) == ("id0", stored_job(0).message)
        (dead,) = await q.dead_letters(DeadFilter(campaign="c1"))
        assert dead.message == stored_job(2).message
        # the same rows offered again: already there, whatever their state
        assert await q.enqueue([stored_job(0), stored_job(1), stored_job(2)]) == [
            Enqueued.PENDING,
            Enqueued.SENT,
            Enqueued.DEAD,
        ]
        assert await q.record("w", [Outcome("id0", State.SENT, "250 ok")]) == 1
        assert (await q.stats("c1")).get(State.SENT) == 2
    finally:
        await q.close()
    db = sqlite3.connect(path)
    assert "message" not in {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
    assert db.execute("SELECT count(*) FROM bodies").fetchone() == (3,)
    db.close()


async def test_a_file_with_a_messages_table_resumes(tmp_path: Path) -> None:
    path = tmp_path / "messages.db"
    earlier_file(path, ("queued", "sent", "deferred"), messages_table=True)

    q = SQLiteQueue(path)
    await q.open()
    try:
        claimed = {j.id: j.message for j in await q.claim("w", 10, 60)}
        assert claimed == {"id0": stored_job(0).message, "id2": stored_job(2).message}
        assert await q.enqueue([stored_job(1), stored_job(3)]) == [Enqueued.SENT, Enqueued.NEW]
        (new,) = await q.claim("w", 10, 60)
        assert (new.id, new.message) == ("id3", stored_job(3).message)
    finally:
        await q.close()
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "messages" not in tables and "jobs_before" not in tables
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_due", "jobs_campaign"} <= indexes
    # stored compressed, under the job's sequence number
    (stored,) = db.execute(
        "SELECT b.message FROM bodies b JOIN jobs j ON j.seq = b.seq WHERE j.id = 'id3'"
    ).fetchone()
    assert stored != stored_job(3).message and unpack(stored) == stored_job(3).message
    db.close()


async def test_the_first_message_of_an_id_in_one_batch_stays(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    try:
        again = Job(
            **{**_fields(stored_job(1)), "message": b"Subject: second\r\n\r\nno\r\n", "row": 9}
        )
        assert await q.enqueue([stored_job(1), again, stored_job(2)]) == [
            Enqueued.NEW,
            Enqueued.DUPLICATE,
            Enqueued.NEW,
        ]
        got = {j.id: j.message for j in await q.claim("w", 10, 60)}
        assert got == {"id1": stored_job(1).message, "id2": stored_job(2).message}
    finally:
        await q.close()


async def test_a_state_change_leaves_the_message_alone(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    try:
        assert await q.enqueue([stored_job(1)]) == [Enqueued.NEW]
        # offered again with other bytes: the first message of an id stays
        assert await q.enqueue([Job(**{**_fields(stored_job(1)), "message": b"other"})]) == [
            Enqueued.PENDING
        ]
        (claimed,) = await q.claim("w", 1, 60)
        assert claimed.message == stored_job(1).message
        await q.record("w", [Outcome("id1", State.DEAD, "550 no", reason="rejected_permanent")])
        assert await q.purge_dead(DeadFilter(campaign="c1")) == 1
    finally:
        await q.close()
    db = sqlite3.connect(tmp_path / "q.db")
    assert db.execute("SELECT count(*) FROM bodies").fetchone() == (0,)  # purged with it
    db.close()


def _fields(j: Job) -> dict[str, object]:
    return {name: getattr(j, name) for name in j.__slots__}  # type: ignore[attr-defined]


async def test_a_damaged_message_is_claimed_marked_unreadable(tmp_path: Path) -> None:
    """The worker records such a job dead; the claim, and the jobs beside it, go on."""
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    try:
        await q.enqueue([stored_job(1), stored_job(2)])
        db = sqlite3.connect(tmp_path / "q.db")
        db.execute("UPDATE bodies SET message = x'00ff00ff00' WHERE seq = 1")
        db.commit()
        db.close()
        got = {j.id: j for j in await q.claim("w", 2, 60)}
        assert "its stored message cannot be read" in got["id1"].unreadable
        assert got["id1"].message == b""
        assert (got["id2"].unreadable, got["id2"].message) == ("", stored_job(2).message)
    finally:
        await q.close()


async def test_a_file_from_before_campaign_control_gets_it(tmp_path: Path) -> None:
    campaigns = (
        "CREATE TABLE IF NOT EXISTS campaigns (\n    name TEXT PRIMARY KEY,\n"
        "    settings TEXT NOT NULL,\n    state TEXT NOT NULL DEFAULT 'active'\n);"
    )
    assert campaigns in SCHEMA
    before = SCHEMA.replace(
        campaigns, "CREATE TABLE campaigns (name TEXT PRIMARY KEY, settings TEXT NOT NULL);"
    )
    path = tmp_path / "before.db"
    db = sqlite3.connect(path)
    db.executescript(before + EVENTS)
    db.execute("INSERT INTO campaigns VALUES ('a', '{\"retry\": {\"first\": 10.0}}')")
    db.commit()
    db.close()
    for _ in range(2):  # opened again: up to date, nothing changes
        q = SQLiteQueue(path)
        await q.open()
        try:
            assert await q.campaign_states() in ({}, {"a": CampaignState.PAUSED})
            await q.enqueue([make_job(1, campaign="a")])
            await q.set_campaign_state("a", CampaignState.PAUSED)
            assert await q.claim("w", 10, 30) == []
            assert await q.campaign_settings("a") == {"retry": {"first": 10.0}}
        finally:
            await q.close()
