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
EXISTS``). The event log (:mod:`mailspool.queue.sqlite.events`) is the tables
``events``, ``event_endpoints`` and ``event_pending``, and triggers on ``jobs``,
``returns`` and ``suppressions`` that write each event in the statement, hence the
transaction, of the change that causes it (:data:`EVENTS`); a file from before them
gets them when opened too.

Files written by earlier versions are moved to this layout when opened, once: a file
whose jobs are keyed by id is rebuilt (:func:`_move_to_bodies`); one from before mailing
lists gets the ``list_name`` column (its jobs are on the default list, ``''``) and the
suppressions table (:func:`_add_lists`); one from before campaign control, the
``state`` column of ``campaigns`` (every campaign active).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

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

#: the event log (mailspool.queue.sqlite.events). Triggers write each event, so every
#: statement that changes a job, a return or a suppression writes its own, in its own
#: transaction, with no bookkeeping in Python. ``seq`` is the cursor: AUTOINCREMENT, so
#: a pruned number is never given again; one writer at a time, so seq order is commit
#: order. ``recipients`` as in ``jobs`` (one a line); ``detail`` is stored whole and
#: clipped when read. The triggers call no SQL function, and the statements that fire
#: them on the hot path say OR FAIL: a function, or ABORT, would have SQLite journal
#: every page each row touches (see SQLiteQueue.record).
EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    job_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    recipients TEXT NOT NULL,
    detail TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    permanent INTEGER NOT NULL DEFAULT 0
);
-- prune
CREATE INDEX IF NOT EXISTS events_at ON events(at);
-- cursor NULL: the endpoint has been offered nothing yet (it started on an empty log)
CREATE TABLE IF NOT EXISTS event_endpoints (
    name TEXT PRIMARY KEY,
    cursor INTEGER,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_pending (
    endpoint TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_at REAL NOT NULL,
    first_at REAL NOT NULL,
    error TEXT NOT NULL,
    dead INTEGER NOT NULL,
    PRIMARY KEY (endpoint, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_pending_due ON event_pending(endpoint, dead, next_at, seq);
-- a leased job's update time stamped: an outcome recorded (it leaves 'sending'), or an
-- expired lease claimed again (it stays: the worker that held it may have delivered).
-- A hand-back (release, release_owner) stamps no time: no event. One trigger for both:
-- each trigger fired costs every row of a claim or a record.
CREATE TRIGGER IF NOT EXISTS jobs_event AFTER UPDATE OF updated_at ON jobs
WHEN OLD.state = 'sending'
BEGIN
    INSERT INTO events (type, at, job_id, campaign, recipients, detail, reason, attempts)
    SELECT NEW.state, NEW.updated_at, NEW.id, NEW.campaign, NEW.recipients,
        NEW.last_reply, NEW.dead_reason, NEW.attempts
    WHERE NEW.state IN ('sent', 'deferred', 'dead', 'suppressed');
    -- after the outcome's; the attempt named is the one that may have delivered (a claim
    -- counts the next)
    INSERT INTO events (type, at, job_id, campaign, recipients, detail, reason, attempts)
    SELECT 'ambiguous', NEW.updated_at, NEW.id, NEW.campaign, NEW.recipients,
        NEW.last_reply, NEW.dead_reason, OLD.attempts
    WHERE NEW.ambiguous > OLD.ambiguous;
END;
-- a new job stored suppressed (INSERT OR IGNORE: a job offered again inserts nothing)
CREATE TRIGGER IF NOT EXISTS jobs_suppressed_event AFTER INSERT ON jobs
WHEN NEW.state = 'suppressed'
BEGIN
    INSERT INTO events (type, at, job_id, campaign, recipients, detail, reason, attempts)
    VALUES ('suppressed', NEW.updated_at, NEW.id, NEW.campaign, NEW.recipients,
        NEW.last_reply, NEW.dead_reason, NEW.attempts);
END;
-- a new return (ON CONFLICT DO NOTHING: one recorded again inserts nothing)
CREATE TRIGGER IF NOT EXISTS returns_event AFTER INSERT ON returns
BEGIN
    INSERT INTO events (type, at, job_id, campaign, recipients, detail, reason, attempts,
        permanent)
    VALUES (NEW.kind, NEW.at, NEW.job_id, NEW.campaign, NEW.address,
        NEW.diagnostic, coalesce(NEW.status, ''),
        coalesce((SELECT attempts FROM jobs WHERE id = NEW.job_id), 0), NEW.permanent);
END;
-- a new unsubscribe: the upsert of an existing entry runs its UPDATE, not an INSERT
CREATE TRIGGER IF NOT EXISTS suppressions_event AFTER INSERT ON suppressions
WHEN NEW.reason = 'unsubscribed'
BEGIN
    INSERT INTO events (type, at, job_id, campaign, recipients, detail, reason, attempts)
    VALUES ('unsubscribed', NEW.created_at, '', '', NEW.address, NEW.list, NEW.source, 0);
END;
"""

#: campaign control (mailspool.queue.sqlite.campaigns): the claims look up paused campaigns
CAMPAIGN_STATES = """
CREATE INDEX IF NOT EXISTS campaigns_state ON campaigns(state);
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
    list_name TEXT NOT NULL DEFAULT '',
    timezone TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, ready_at);
CREATE INDEX IF NOT EXISTS jobs_campaign ON jobs(campaign, state, ready_at);
-- a job's message, compressed (mailspool.queue.packing)
CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, message BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active'
);
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
    """Create the tables of a new file, or move an earlier file's rows to them; then the
    campaigns' states, the event log, its tables and triggers together (after a move:
    moved jobs are not new)."""
    columns = _columns(db)
    if columns and "seq" not in columns:
        _move_to_bodies(db, had_message_column="message" in columns)
    elif columns and "list_name" not in columns:
        _add_lists(db)
    else:  # one transaction: executescript would commit (and sync) each table apart
        with _transaction(db):
            _run_script(db, SCHEMA)
    if "timezone" not in _columns(db):  # a file from before send windows
        with _transaction(db):
            if "timezone" not in _columns(db):
                db.execute("ALTER TABLE jobs ADD COLUMN timezone TEXT NOT NULL DEFAULT ''")
    with _transaction(db):
        if "state" not in _columns(db, "campaigns"):  # a file from before campaign control
            db.execute("ALTER TABLE campaigns ADD COLUMN state TEXT NOT NULL DEFAULT 'active'")
        _run_script(db, CAMPAIGN_STATES + EVENTS)


def _columns(db: sqlite3.Connection, table: str = "jobs") -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (the connection is in autocommit while the schema opens)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _add_lists(db: sqlite3.Connection) -> None:
    """A file from before mailing lists: its jobs are on the default list (''); add the
    column and the suppression list, in one transaction. Another process may have done
    it meanwhile: checked again once the file is locked."""
    with _transaction(db):
        if "list_name" not in _columns(db):
            db.execute("ALTER TABLE jobs ADD COLUMN list_name TEXT NOT NULL DEFAULT ''")
        _run_script(db, SCHEMA)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (executescript would
    commit it first). A trigger's body holds semicolons: a statement ends at the first
    one that completes it."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _move_to_bodies(db: sqlite3.Connection, *, had_message_column: bool) -> None:
    """Earlier files keyed jobs by id and kept messages uncompressed, in the jobs row or
    in a ``messages`` table keyed by id. Rebuild them, once, in one transaction."""
    db.create_function("mailspool_pack", 1, pack, deterministic=True)
    with _transaction(db):
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
