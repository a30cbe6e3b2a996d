"""SQLite queue files in the layouts before the current one, as an upgraded install finds
them, and the jobs their rows hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailspool.models import Job

# the jobs table as it was when each row held its message
OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, campaign TEXT NOT NULL, key TEXT NOT NULL, row INTEGER NOT NULL,
    message_id TEXT NOT NULL, sender TEXT NOT NULL, recipients TEXT NOT NULL,
    message BLOB NOT NULL, body_offset INTEGER NOT NULL DEFAULT 0, attachments TEXT,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, ready_at REAL NOT NULL,
    lease_owner TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    last_reply TEXT NOT NULL DEFAULT '', dead_reason TEXT NOT NULL DEFAULT '',
    ambiguous INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_due ON jobs(state, ready_at);
CREATE INDEX jobs_campaign ON jobs(campaign, state, ready_at);
"""

# then: messages in their own table, keyed by job id, uncompressed
MESSAGES_SCHEMA = OLD_SCHEMA.replace("    message BLOB NOT NULL, ", "    ") + (
    "CREATE TABLE messages (id TEXT PRIMARY KEY, message BLOB NOT NULL);"
)


def earlier_file(path: Path, states: tuple[str, ...], *, messages_table: bool) -> None:
    """A queue file in an earlier layout: each message in its jobs row, or (later) in a
    messages table keyed by job id."""
    db = sqlite3.connect(path)
    db.executescript(MESSAGES_SCHEMA if messages_table else OLD_SCHEMA)
    message_column = "" if messages_table else " message,"
    for i, state in enumerate(states):
        inline = () if messages_table else (stored_job(i).message,)
        values = (f"id{i}", "c1", f"k{i}", i + 2, f"<id{i}@example.com>", "a@example.com",
                  f"r{i}@example.com", *inline, state)  # fmt: skip
        db.execute(
            "INSERT INTO jobs (id, campaign, key, row, message_id, sender, recipients,"
            f"{message_column} state, ready_at, created_at, updated_at)"
            f" VALUES ({','.join('?' * len(values))},0,1,1)",
            values,
        )
        if messages_table:
            db.execute(
                "INSERT INTO messages (id, message) VALUES (?, ?)",
                (f"id{i}", stored_job(i).message),
            )
    db.commit()
    db.close()


def stored_job(i: int) -> Job:
    """The job of row ``i`` of an earlier file (its message is the one the file holds)."""
    return Job(
        id=f"id{i}", campaign="c1", key=f"k{i}", message_id=f"<id{i}@example.com>",
        sender="a@example.com", recipients=(f"r{i}@example.com",),
        message=b"Subject: hi\r\n\r\nmessage %d\r\n" % i, row=i + 2,
    )  # fmt: skip
