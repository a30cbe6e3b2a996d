"""The SQLite queue's event log beyond the contract suite: files from before it, the
triggers' edges (hand-backs, a failed batch, long details) and its cursors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailspool.errors import QueueError
from mailspool.models import Outcome, State
from mailspool.queue import SQLiteQueue
from mailspool.queue.events import MAX_DETAIL_CHARS, Pending
from tests.support.jobs import make_job
from tests.support.sqlite_files import earlier_file

_EVENT_OBJECTS = ("table", "trigger", "index")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteQueue]:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    yield q
    await q.close()


def _drop_event_log(path: Path) -> None:
    """The file as a version from before the event log left it."""
    db = sqlite3.connect(path)
    names = db.execute(
        "SELECT type, name FROM sqlite_master WHERE name LIKE 'event%' OR name LIKE '%_event'"
    ).fetchall()
    for kind, name in sorted(names, key=lambda r: _EVENT_OBJECTS.index(r[0]), reverse=True):
        db.execute(f"DROP {kind.upper()} IF EXISTS {name}")
    db.commit()
    db.close()


async def test_a_file_from_before_the_event_log_gets_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    q = SQLiteQueue(path)
    await q.open()
    await q.enqueue([make_job(1), make_job(2)])
    await q.claim("w", 10, 60)
    await q.record("w", [Outcome("c1-00001", State.SENT, "250")])
    await q.close()
    _drop_event_log(path)

    q = SQLiteQueue(path)
    await q.open()
    try:
        assert await q.events.read() == []  # what happened before is not made up
        await q.record("w", [Outcome("c1-00002", State.SENT, "250")])
        assert [(e.type.value, e.job_id) for e in await q.events.read()] == [("sent", "c1-00002")]
    finally:
        await q.close()


async def test_jobs_moved_from_an_earlier_layout_write_no_event(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    earlier_file(path, ("queued", "suppressed", "sent"), messages_table=False)
    q = SQLiteQueue(path)
    await q.open()
    try:
        assert await q.events.read() == []  # the suppressed job is moved, not new
        await q.claim("w", 10, 60)
        await q.record("w", [Outcome("id0", State.SENT, "250 ok")])
        [e] = await q.events.read()
        assert (e.type.value, e.job_id, e.recipients) == ("sent", "id0", ("r0@example.com",))
    finally:
        await q.close()


async def test_hand_backs_write_no_event(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(1), make_job(2)])
    await queue.claim("w", 10, 60)
    await queue.release("w", ["c1-00001"], reply="421 busy")
    assert await queue.release_owner("w") == 1
    assert await queue.events.read() == []


async def test_a_failed_batch_records_nothing_and_writes_no_event(queue: SQLiteQueue) -> None:
    """record() says OR FAIL: the rows before the failing one are rolled back with it."""
    await queue.enqueue([make_job(1), make_job(2)])
    await queue.claim("w", 10, 60)
    bad = Outcome("c1-00002", State.SENT, None)  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(QueueError, match="NOT NULL"):
        await queue.record("w", [Outcome("c1-00001", State.SENT, "250"), bad])
    assert await queue.events.read() == []
    job = await queue.get("c1-00001")
    assert job is not None and job.state is State.SENDING


async def test_a_long_reply_is_clipped_in_its_event(queue: SQLiteQueue) -> None:
    await queue.enqueue([make_job(1)])
    await queue.claim("w", 10, 60)
    reply = "550 5.7.1 " + "x" * 5000
    await queue.record("w", [Outcome("c1-00001", State.DEAD, reply, reason="rejected")])
    [e] = await queue.events.read()
    assert e.detail == reply[:MAX_DETAIL_CHARS]
    job = await queue.get("c1-00001")
    assert job is not None and job.last_reply == reply  # the job keeps it whole


async def test_cursors_are_decimal_numbers(queue: SQLiteQueue) -> None:
    ev = queue.events
    await queue.enqueue([make_job(1)])
    await queue.claim("w", 10, 60)
    await queue.record("w", [Outcome("c1-00001", State.SENT, "250")])
    [e] = await ev.read()
    assert e.cursor.isdigit() and await ev.head() == e.cursor
    n = int(e.cursor)
    assert await ev.get([f"0{n}", f"+{n}", f" {n}", "x", "", "9" * 30]) == []
    with pytest.raises(ValueError, match="cursor"):
        await ev.read("x")
    await ev.lease("hook", "d1", 60)
    with pytest.raises(ValueError, match="cursor"):
        await ev.advance("hook", "d1", "x")
    with pytest.raises(ValueError, match="cursor"):
        await ev.put_pending("hook", [Pending("x", 1, 0.0, 0.0)])
    await ev.drop_pending("hook", ["x"])  # names no row: nothing to drop
    assert await ev.advance("hook", "d1", e.cursor)
    [state] = await ev.endpoints()
    assert state.cursor == e.cursor
