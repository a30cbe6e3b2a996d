"""How the SQLite queue's jobs become rows and rows jobs: the columns a job is read from,
the batched INSERTs of new jobs and their messages, the dead-letter filter."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailspool.models import Job, State, attachments_from_json, attachments_json
from mailspool.queue.base import DeadFilter
from mailspool.queue.packing import read_stored, stored_form

JOB_COLUMNS = (
    "id, campaign, key, row, message_id, sender, recipients,"
    " (SELECT message FROM bodies WHERE bodies.seq = jobs.seq), body_offset, attachments,"
    " state, attempts, ready_at, created_at, updated_at, last_reply, dead_reason, lease_owner,"
    " list_name, timezone"
)
CLAIMABLE = "('deferred', 'queued', 'sending')"
INSERT_JOBS = (
    "INSERT OR IGNORE INTO jobs (seq, id, campaign, key, row, message_id, sender, recipients,"
    " body_offset, attachments, state, ready_at, created_at, updated_at, list_name, timezone)"
    " VALUES "
)
INSERT_BODIES = "INSERT INTO bodies (seq, message) VALUES "
_ROW_PARAMS = "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?"
INSERT_ROWS = 2000  # 15 parameters a row, under SQLite's limit of 32766 a statement
# a handed-back job: deferred if it was tried before, else queued
HANDED_BACK = "CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END"


def job_from_row(r: Sequence[Any]) -> Job:
    """The job of a row with the JOB_COLUMNS."""
    atts = attachments_from_json(r[9])
    state = State(r[10])
    message, unreadable = read_stored(r[7])  # a damaged file; SQLite's own checks passed
    return Job(
        id=r[0],
        campaign=r[1],
        key=r[2],
        row=r[3],
        message_id=r[4],
        sender=r[5],
        recipients=tuple(r[6].split("\n")),
        message=message,
        unreadable=unreadable,
        body_offset=r[8],
        attachments=atts,
        state=state,
        attempts=r[11],
        not_before=r[12] if state in (State.QUEUED, State.DEFERRED) else 0.0,
        created_at=r[13],
        updated_at=r[14],
        last_reply=r[15],
        dead_reason=r[16],
        lease_owner=r[17] or "",
        list_name=r[18],
        timezone=r[19],
    )


@dataclass(slots=True)
class InsertChunk:
    """The INSERTs of up to INSERT_ROWS jobs. Row k gets the sequence number ?1 + k,
    ?1 (the next free number) set in the transaction: no row has to come back."""

    jobs_sql: str
    jobs_params: list[Any]
    bodies_sql: str
    bodies_params: list[Any]


def insert_chunks(jobs: Sequence[Job], now: float) -> list[InsertChunk]:
    """The INSERTs of new jobs, built on the caller's thread (see SQLiteQueue.enqueue)."""
    out: list[InsertChunk] = []
    for start in range(0, len(jobs), INSERT_ROWS):
        chunk = jobs[start : start + INSERT_ROWS]
        params: list[Any] = [0]
        bodies: list[Any] = [0]
        for j in chunk:
            created = j.created_at or now
            params += (
                j.id, j.campaign, j.key, j.row, j.message_id, j.sender,
                "\n".join(j.recipients), j.body_offset, attachments_json(j.attachments),
                _initial_state(j, now), j.not_before or created, created, now, j.list_name,
                j.timezone,
            )  # fmt: skip
            bodies.append(stored_form(j.message))
        jobs_sql, bodies_sql = _insert_sql(len(chunk))
        out.append(InsertChunk(jobs_sql, params, bodies_sql, bodies))
    return out


def _initial_state(j: Job, now: float) -> str:
    """A new job's state: suppressed (final) when offered so, else queued or deferred."""
    if j.state is State.SUPPRESSED:
        return State.SUPPRESSED.value
    return State.DEFERRED.value if j.not_before > now else State.QUEUED.value


@functools.lru_cache(maxsize=8)
def _insert_sql(n: int) -> tuple[str, str]:
    return (
        INSERT_JOBS + ",".join(f"(?1+{k},{_ROW_PARAMS})" for k in range(n)),
        INSERT_BODIES + ",".join(f"(?1+{k},?)" for k in range(n)),
    )


def insert_new(db: sqlite3.Connection, chunks: list[InsertChunk]) -> int:
    """Insert the jobs and the message of each one inserted; how many were. A job whose
    id exists keeps its row and its message (the first message of an id stays)."""
    inserted = 0
    for c in chunks:
        (base,) = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM jobs").fetchone()
        c.jobs_params[0] = c.bodies_params[0] = base
        n = len(c.bodies_params) - 1
        added = db.execute(c.jobs_sql, c.jobs_params).rowcount
        if added == n:
            db.execute(c.bodies_sql, c.bodies_params)
        elif added:  # some were there already: store only the new ones' messages
            rows = db.execute(
                "SELECT seq FROM jobs WHERE seq BETWEEN ? AND ?", (base, base + n - 1)
            ).fetchall()
            values = [v for (seq,) in rows for v in (seq, c.bodies_params[1 + seq - base])]
            db.execute(INSERT_BODIES + ",".join(["(?,?)"] * len(rows)), values)
        inserted += added
    return inserted


def existing_rows(db: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[int, str, float]]:
    """Row, state and last update of those of ``ids`` that exist, by id."""
    found: dict[str, tuple[int, str, float]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        q = f"SELECT id, row, state, updated_at FROM jobs WHERE id IN ({marks})"
        for jid, row, state, updated in db.execute(q, chunk):
            found[jid] = (row, state, updated)
    return found


def dead_where(flt: DeadFilter) -> tuple[str, list[Any]]:
    """A WHERE clause (and its arguments) for the dead letters ``flt`` matches."""
    where: list[str] = ["state = 'dead'"]
    args: list[Any] = []
    if flt.campaign:
        where.append("campaign = ?")
        args.append(flt.campaign)
    if flt.reason:
        where.append("dead_reason = ?")
        args.append(flt.reason)
    if flt.since is not None:
        where.append("updated_at >= ?")
        args.append(flt.since)
    if flt.ids:
        where.append(f"id IN ({','.join('?' * len(flt.ids))})")
        args.extend(flt.ids)
    return " AND ".join(where), args
