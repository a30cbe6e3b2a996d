"""The PostgreSQL job store's schema: where its tables live (the store URL), the tables
(created, or brought up to date from an earlier version: ``create_or_upgrade``),
the statements prepared on every connection, and how rows become jobs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mailspool.errors import ConfigError
from mailspool.models import Job, State, attachments_from_json
from mailspool.queue.base import DeadFilter
from mailspool.queue.packing import read_stored
from mailspool.queue.store import CLAIMABLE, Ref
from mailspool.urls import redact_url

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DEFAULT_SCHEMA = "mailspool"
DEFAULT_POOL = 5


def parse_store_url(url: str) -> tuple[str, str, int]:
    """(the DSN for asyncpg, the schema, the pool size) from a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {redact_url(url)}")
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema, pool, rest = DEFAULT_SCHEMA, DEFAULT_POOL, []
    for name, value in params:
        if name == "schema":
            schema = value
        elif name == "pool":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"pool={value!r} in the store URL: use a positive integer")
            pool = int(value)
        else:
            rest.append((name, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"schema={schema!r} in the store URL: use lowercase letters, digits and _"
        )
    return urlunsplit(parts._replace(query=urlencode(rest))), schema, pool


#: the suppression list (mailspool.queue.postgres.suppressions): one row per (address or
#: @domain key, list; '' is global), in code-point order (COLLATE "C") for its pages
SUPPRESSIONS_DDL = """
CREATE TABLE IF NOT EXISTS {s}.suppressions (
    address text COLLATE "C" NOT NULL,
    list text COLLATE "C" NOT NULL,
    reason text NOT NULL,
    source text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    PRIMARY KEY (address, list)
);
CREATE INDEX IF NOT EXISTS suppressions_list ON {s}.suppressions (list, address);
CREATE INDEX IF NOT EXISTS suppressions_expiry ON {s}.suppressions (expires_at)
    WHERE expires_at IS NOT NULL;
"""

#: returned mail (mailspool.queue.postgres.returns): events on jobs, unmatched messages
RETURNS_DDL = """
CREATE TABLE IF NOT EXISTS {s}.returns (
    seq bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    job_id text NOT NULL,
    campaign text NOT NULL,
    kind text NOT NULL,
    address text NOT NULL,
    permanent boolean NOT NULL,
    status text,
    diagnostic text NOT NULL,
    at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS returns_job ON {s}.returns (job_id, at);
CREATE INDEX IF NOT EXISTS returns_campaign ON {s}.returns (campaign);
CREATE INDEX IF NOT EXISTS returns_soft ON {s}.returns (address, at) WHERE NOT permanent;
CREATE TABLE IF NOT EXISTS {s}.unmatched (
    digest text PRIMARY KEY,
    envelope_to text NOT NULL,
    reason text NOT NULL,
    received_at double precision NOT NULL,
    size integer NOT NULL,
    data bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS unmatched_received ON {s}.unmatched (received_at, digest);
"""

#: the event of a job's change (see EVENTS_DDL); a schema from before campaign control
#: gets it again, for a cancelled job writes none
JOB_EVENT_FN = """
CREATE OR REPLACE FUNCTION {s}.job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- a job stored suppressed, or a leased job's outcome (a cancelled job has no event)
    IF TG_OP = 'INSERT' OR NEW.state NOT IN ('sending', 'cancelled') THEN
        INSERT INTO {s}.events (type, at, job_id, campaign, recipients, detail, reason,
            attempts) VALUES (NEW.state, NEW.updated_at, NEW.id, NEW.campaign,
            NEW.recipients, left(NEW.last_reply, 1000), NEW.dead_reason, NEW.attempts);
    END IF;
    -- an outcome recorded ambiguous, or an expired lease claimed again (the attempt
    -- that may have delivered is the one before this claim's)
    IF TG_OP = 'UPDATE' AND NEW.ambiguous > OLD.ambiguous THEN
        INSERT INTO {s}.events (type, at, job_id, campaign, recipients, detail, reason,
            attempts) VALUES ('ambiguous', NEW.updated_at, NEW.id, NEW.campaign,
            NEW.recipients, left(NEW.last_reply, 1000), NEW.dead_reason,
            CASE WHEN NEW.state = 'sending' THEN OLD.attempts ELSE NEW.attempts END);
    END IF;
    RETURN NULL;
END $$;
"""

#: job events and webhook delivery state (mailspool.queue.postgres.events). Triggers write
#: each event in the transaction of the change that causes it, whichever statement makes
#: it; an event is read by (xid, seq): the writer's transaction id, then its order in it.
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS {s}.events (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq bigserial NOT NULL,
    type text NOT NULL,
    at double precision NOT NULL,
    job_id text NOT NULL,
    campaign text NOT NULL,
    recipients text NOT NULL,
    detail text NOT NULL,
    reason text NOT NULL,
    attempts integer NOT NULL,
    permanent boolean NOT NULL DEFAULT false,
    PRIMARY KEY (xid, seq)
);
-- events come in about the order of their time: a BRIN index costs next to nothing to
-- keep up, and finds what prune deletes without reading the whole table
CREATE INDEX IF NOT EXISTS events_at ON {s}.events USING brin (at);
CREATE TABLE IF NOT EXISTS {s}.endpoints (
    name text COLLATE "C" PRIMARY KEY,
    cursor text,
    owner text NOT NULL,
    lease_until double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.pending (
    endpoint text NOT NULL,
    xid xid8 NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL,
    next_at double precision NOT NULL,
    first_at double precision NOT NULL,
    error text NOT NULL,
    dead boolean NOT NULL,
    PRIMARY KEY (endpoint, xid, seq)
);
CREATE INDEX IF NOT EXISTS pending_due ON {s}.pending (endpoint, next_at) WHERE NOT dead;
@JOB_EVENT@
CREATE OR REPLACE FUNCTION {s}.return_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.events (type, at, job_id, campaign, recipients, detail, reason,
        attempts, permanent) VALUES (NEW.kind, NEW.at, NEW.job_id, NEW.campaign,
        NEW.address, left(NEW.diagnostic, 1000), coalesce(NEW.status, ''), coalesce(
        (SELECT attempts FROM {s}.jobs WHERE id = NEW.job_id), 0), NEW.permanent);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION {s}.unsubscribe_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.events (type, at, job_id, campaign, recipients, detail, reason,
        attempts) VALUES ('unsubscribed', NEW.created_at, '', '', NEW.address,
        left(NEW.list, 1000), NEW.source, 0);
    RETURN NULL;
END $$;
-- "OF updated_at": a claim and an outcome set it, a hand-back (release) or a lease
-- extended does not; a job that was not leased has no outcome
CREATE OR REPLACE TRIGGER job_outcome AFTER UPDATE OF updated_at ON {s}.jobs
    FOR EACH ROW WHEN (OLD.state = 'sending') EXECUTE FUNCTION {s}.job_event();
-- a job offered again (ON CONFLICT DO NOTHING) inserts no row: no event
CREATE OR REPLACE TRIGGER job_suppressed AFTER INSERT ON {s}.jobs
    FOR EACH ROW WHEN (NEW.state = 'suppressed') EXECUTE FUNCTION {s}.job_event();
-- the same bounce again (ON CONFLICT DO NOTHING) inserts no row: no event
CREATE OR REPLACE TRIGGER return_event AFTER INSERT ON {s}.returns
    FOR EACH ROW EXECUTE FUNCTION {s}.return_event();
-- an entry merged into one stored (ON CONFLICT DO UPDATE) fires no INSERT trigger
CREATE OR REPLACE TRIGGER unsubscribe_event AFTER INSERT ON {s}.suppressions
    FOR EACH ROW WHEN (NEW.reason = 'unsubscribed') EXECUTE FUNCTION {s}.unsubscribe_event();
""".replace("@JOB_EVENT@", JOB_EVENT_FN.strip())

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.jobs (
    id text PRIMARY KEY,
    campaign text NOT NULL,
    key text NOT NULL,
    "row" integer NOT NULL,
    message_id text NOT NULL,
    sender text NOT NULL,
    recipients text NOT NULL,
    message bytea,
    body_offset integer NOT NULL DEFAULT 0,
    attachments text,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    ready_at double precision NOT NULL,
    lease_owner text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    last_reply text NOT NULL DEFAULT '',
    dead_reason text NOT NULL DEFAULT '',
    ambiguous integer NOT NULL DEFAULT 0,
    packed_message bytea,
    list_name text NOT NULL DEFAULT '',
    timezone text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_due ON {s}.jobs (state, ready_at);
CREATE INDEX IF NOT EXISTS jobs_campaign ON {s}.jobs (campaign, state, ready_at);
CREATE TABLE IF NOT EXISTS {s}.blobs (digest text PRIMARY KEY, data bytea NOT NULL);
@SUPPRESSIONS@
@RETURNS@
CREATE TABLE IF NOT EXISTS {s}.campaigns (
    name text PRIMARY KEY,
    settings text NOT NULL,
    state text NOT NULL DEFAULT 'active'
);
@EVENTS@
""".replace("@SUPPRESSIONS@", SUPPRESSIONS_DDL.strip()).replace("@RETURNS@", RETURNS_DDL.strip())
DDL = DDL.replace("@EVENTS@", EVENTS_DDL.strip())

JOB_COLUMNS = (
    'id, campaign, key, "row", message_id, sender, recipients, message, body_offset,'
    " attachments, state, attempts, ready_at, created_at, updated_at, last_reply,"
    " dead_reason, lease_owner, packed_message, list_name, timezone"
)

# A table from before messages were packed: its rows keep their plain ``message``; new
# rows leave it NULL, so that a mailspool from before, still running somewhere, fails on
# them instead of sending the packed bytes as the message.
ADD_PACKED = (
    "ALTER TABLE {s}.jobs ADD COLUMN packed_message bytea, ALTER COLUMN message DROP NOT NULL"
)
# A table from before mailing lists: its jobs are on the default list ("").
ADD_LIST_NAME = "ALTER TABLE {s}.jobs ADD COLUMN list_name text NOT NULL DEFAULT ''"
# A table from before send windows: its jobs follow their campaign's timezone ("").
ADD_TIMEZONE = "ALTER TABLE {s}.jobs ADD COLUMN timezone text NOT NULL DEFAULT ''"
# A schema from before campaign control: every campaign active, no event for a cancel.
ADD_CAMPAIGN_STATE = (
    "ALTER TABLE {s}.campaigns ADD COLUMN state text NOT NULL DEFAULT 'active';" + JOB_EVENT_FN
)

_HAS_COLUMN = (
    "SELECT true FROM information_schema.columns"
    " WHERE table_schema = $1 AND table_name = $3 AND column_name = $2"
)


async def create_or_upgrade(con: Any, s: str) -> None:
    """Create the tables of schema ``s``, or add what a schema of an earlier version
    lacks, each only when it is missing: a role that does not own the tables can open a
    store that is up to date. Run in a transaction, under the store's advisory lock."""
    # the table created last: its presence means every other one of its time is there
    if await con.fetchval("SELECT to_regclass($1)", f"{s}.campaigns") is None:
        await con.execute(DDL.format(s=s))
        return
    if not await con.fetchval(_HAS_COLUMN, s, "packed_message", "jobs"):
        await con.execute(ADD_PACKED.format(s=s))
    if not await con.fetchval(_HAS_COLUMN, s, "list_name", "jobs"):
        await con.execute(ADD_LIST_NAME.format(s=s))
    if not await con.fetchval(_HAS_COLUMN, s, "timezone", "jobs"):
        await con.execute(ADD_TIMEZONE.format(s=s))
    if await con.fetchval("SELECT to_regclass($1)", f"{s}.suppressions") is None:
        await con.execute(SUPPRESSIONS_DDL.format(s=s))
    if await con.fetchval("SELECT to_regclass($1)", f"{s}.unmatched") is None:
        await con.execute(RETURNS_DDL.format(s=s))
    if await con.fetchval("SELECT to_regclass($1)", f"{s}.pending") is None:
        await con.execute(EVENTS_DDL.format(s=s))
    if not await con.fetchval(_HAS_COLUMN, s, "state", "campaigns"):
        await con.execute(ADD_CAMPAIGN_STATE.format(s=s))


#: the states a job can be claimed from, as stored
CLAIMABLE_VALUES = [s.value for s in CLAIMABLE]

# a handed-back job: deferred if it was tried before, else queued
HANDED_BACK = "CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END"

LEASE_SET = (
    "state = 'sending', lease_owner = $1, ready_at = $2, attempts = attempts + 1,"
    " updated_at = $3,"
    # a lease that expired: its worker may have delivered before it died
    " ambiguous = ambiguous + (state = 'sending')::int"
)


def insert_sql(t: str) -> str:
    return (
        f'INSERT INTO {t} (id, campaign, key, "row", message_id, sender,'
        # every message written now is packed (mailspool.queue.packing)
        " recipients, packed_message, body_offset, attachments, ready_at, created_at,"
        " updated_at, state, list_name, timezone)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[],"
        " $5::text[], $6::text[], $7::text[], $8::bytea[], $9::int[], $10::text[],"
        " $11::float8[], $12::float8[], $13::float8[], $14::text[], $15::text[],"
        " $16::text[])"
        " ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def record_sql(t: str) -> str:
    """One statement for a batch of outcomes, given as parallel arrays ($1 to $6: id,
    state, ready_at, reply, reason, ambiguous; $7 now, $8 the owner): one round of the
    protocol instead of one per outcome. Ids must be distinct.

    The rows are found by their ids alone ("id = ANY", the other conditions hidden from
    the planner by "IS TRUE"): on a table never analyzed (a new store; statistics lag
    behind a queue's churn) a join of the outcomes with the table is planned as a scan
    of every leased job, for each batch."""
    return (
        f"UPDATE {t} AS j SET state = o.state, ready_at = o.ready_at, updated_at = $7,"
        " last_reply = o.reply, dead_reason = o.reason, ambiguous = j.ambiguous + o.ambiguous,"
        " lease_owner = NULL"
        " FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::int[])"
        " AS o(id, state, ready_at, reply, reason, ambiguous)"
        " WHERE j.id = ANY($1::text[]) AND j.id = o.id"
        " AND (j.lease_owner = $8 AND j.state = 'sending') IS TRUE RETURNING j.id"
    )


def extend_sql(t: str) -> str:
    return f"UPDATE {t} SET ready_at = $2 WHERE id = $1 AND lease_owner = $3 AND state = 'sending'"


def not_paused(s: str) -> str:
    """A condition of claims: no job of a paused campaign (schema ``s``)."""
    return f"campaign NOT IN (SELECT name FROM {s}.campaigns WHERE state = 'paused')"


def claim_ids_sql(s: str, scoped: bool) -> str:
    # "(...) IS TRUE" is no index condition: the rows are found by their ids alone,
    # never by a scan of every job in a claimable state
    scope = " AND campaign = $6" if scoped else ""
    return (
        f"UPDATE {s}.jobs SET {LEASE_SET} WHERE id = ANY($4::text[])"
        f" AND (state = ANY($5::text[]) AND ready_at <= $3{scope} AND {not_paused(s)}) IS TRUE"
        f" RETURNING {JOB_COLUMNS}"
    )


def job_from_row(r: Any) -> Job:
    """The job of a row with the JOB_COLUMNS."""
    packed = r["packed_message"]
    if packed is not None:
        message, unreadable = read_stored(packed)
    else:  # written before messages were packed
        message, unreadable = bytes(r["message"] or b""), ""
    atts = attachments_from_json(r["attachments"])
    state = State(r["state"])
    return Job(
        id=r["id"],
        campaign=r["campaign"],
        key=r["key"],
        row=r["row"],
        message_id=r["message_id"],
        sender=r["sender"],
        recipients=tuple(r["recipients"].split("\n")),
        message=message,
        unreadable=unreadable,
        body_offset=r["body_offset"],
        attachments=atts,
        state=state,
        attempts=r["attempts"],
        not_before=r["ready_at"] if state in (State.QUEUED, State.DEFERRED) else 0.0,
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        last_reply=r["last_reply"],
        dead_reason=r["dead_reason"],
        lease_owner=r["lease_owner"] or "",
        list_name=r["list_name"],
        timezone=r["timezone"],
    )


def refs_from_rows(rows: Sequence[Any]) -> list[Ref]:
    """Refs of rows with an ``id`` and a ``campaign``."""
    return [Ref(r["id"], r["campaign"]) for r in rows]


def dead_where(flt: DeadFilter, first: int) -> tuple[str, list[Any]]:
    """A WHERE clause for dead letters; placeholders numbered from ``first``."""
    where: list[str] = ["state = 'dead'"]
    args: list[Any] = []
    for column, op, value in (
        ("campaign", "=", flt.campaign or None),
        ("dead_reason", "=", flt.reason or None),
        ("updated_at", ">=", flt.since),
        ("id", "= ANY", list(flt.ids) if flt.ids else None),
    ):
        if value is not None:
            args.append(value)
            placeholder = f"${first + len(args) - 1}"
            where.append(
                f"{column} = ANY({placeholder}::text[])"
                if op == "= ANY"
                else f"{column} {op} {placeholder}"
            )
    return " AND ".join(where), args
