"""The SQLite queue's tables, how a message is stored in them, and the move of a file
written by an earlier version to this layout.

Jobs are keyed by a sequence number in insertion order; the job id (a hash of campaign
and key) has its own unique index. A message lives in ``bodies`` under its job's number,
compressed: each insert then appends to the end of both tables instead of landing on a
random page of an id-ordered tree, and a batch writes a fifth of the bytes (see
mailspool.queue.packing). Written
once, a message is never rewritten by a state change.

The suppression list (:mod:`mailspool.queue.sqlite.suppressions`) is the table
``suppressions``, keyed by (address key, list), ``''`` standing for global. Returned
mail (:mod:`mailspool.queue.sqlite.returns`) is the tables ``returns`` and
``unmatched``; a file from before them gets them when opened (``CREATE ... IF NOT
EXISTS``).

Files written by earlier versions are moved to this layout when opened, once: a file
whose jobs are keyed by id is rebuilt (:func:`_move_to_bodies`); one from before mailing
lists gets the ``list_name`` column (its jobs are on the default list, ``''``) and the
suppressions table (:func:`_add_lists`).
"""

from __future__ import annotations

import sqlite3

from mailspool.queue.packing import pack

#: the suppression list: one row per (address or @domain key, list; '' is global)
SUPPRESSIONS = """
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT NOT NULL,
    list TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (address, list)
) WITHOUT ROWID;
-- a page of one list's entries
CREATE INDEX IF NOT EXISTS suppressions_list ON suppressions(list, address);
-- the purge of expired entries
CREATE INDEX IF NOT EXISTS suppressions_expiry ON suppressions(expires_at)
    WHERE expires_at IS NOT NULL;
"""

#: returned mail (mailspool.queue.sqlite.returns): events on jobs, unmatched messages
RETURNS = """
CREATE TABLE IF NOT EXISTS returns (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    permanent INTEGER NOT NULL,
    status TEXT,
    diagnostic TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS returns_job ON returns(job_id, at);
CREATE INDEX IF NOT EXISTS returns_campaign ON returns(campaign);
-- the soft bounces of an address within the window
CREATE INDEX IF NOT EXISTS returns_soft ON returns(address, at) WHERE permanent = 0;
CREATE TABLE IF NOT EXISTS unmatched (
    digest TEXT PRIMARY KEY,
    envelope_to TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at REAL NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS unmatched_received ON unmatched(received_at, digest);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    campaign TEXT NOT NULL,
    key TEXT NOT NULL,
    row INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    body_offset INTEGER NOT NULL DEFAULT 0,
    attachments TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    ready_at REAL NOT NULL,
    lease_owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_reply TEXT NOT NULL DEFAULT '',
    dead_reason TEXT NOT NULL DEFAULT '',
    ambiguous INTEGER NOT NULL DEFAULT 0,
    list_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, ready_at);
CREATE INDEX IF NOT EXISTS jobs_campaign ON jobs(campaign, state, ready_at);
-- a job's message, compressed (mailspool.queue.packing)
CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, message BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (name TEXT PRIMARY KEY, settings TEXT NOT NULL);
"""
    + SUPPRESSIONS
    + RETURNS
)


#: the columns every layout has had, copied as they are when a file moves to this one
_KEPT = (
    "id, campaign, key, row, message_id, sender, recipients, body_offset, attachments,"
    " state, attempts, ready_at, lease_owner, created_at, updated_at, last_reply,"
    " dead_reason, ambiguous"
)


def open_schema(db: sqlite3.Connection) -> None:
    """Create the tables of a new file, or move an earlier file's rows to them."""
    columns = _columns(db)
    if columns and "seq" not in columns:
        _move_to_bodies(db, had_message_column="message" in columns)
    elif columns and "list_name" not in columns:
        _add_lists(db)
    else:
        db.executescript(SCHEMA)


def _columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute("PRAGMA table_info(jobs)")}


def _add_lists(db: sqlite3.Connection) -> None:
    """A file from before mailing lists: its jobs are on the default list (''); add the
    column and the suppression list, in one transaction. Another process may have done
    it meanwhile: checked again once the file is locked."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if "list_name" not in _columns(db):
            db.execute("ALTER TABLE jobs ADD COLUMN list_name TEXT NOT NULL DEFAULT ''")
        _run_script(db, SCHEMA)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (executescript would
    commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _move_to_bodies(db: sqlite3.Connection, *, had_message_column: bool) -> None:
    """Earlier files keyed jobs by id and kept messages uncompressed, in the jobs row or
    in a ``messages`` table keyed by id. Rebuild them, once, in one transaction."""
    db.create_function("mailspool_pack", 1, pack, deterministic=True)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DROP INDEX IF EXISTS jobs_due")
        db.execute("DROP INDEX IF EXISTS jobs_campaign")
        db.execute("ALTER TABLE jobs RENAME TO jobs_before")
        _run_script(db, SCHEMA)
        db.execute(f"INSERT INTO jobs ({_KEPT}) SELECT {_KEPT} FROM jobs_before ORDER BY rowid")
        if had_message_column:
            source = "SELECT j.seq, b.message FROM jobs j JOIN jobs_before b ON b.id = j.id"
        else:
            source = "SELECT j.seq, m.message FROM jobs j JOIN messages m ON m.id = j.id"
        db.execute(
            f"INSERT INTO bodies (seq, message) SELECT seq, mailspool_pack(message) FROM ({source})"
        )
        db.execute("DROP TABLE jobs_before")
        db.execute("DROP TABLE IF EXISTS messages")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
