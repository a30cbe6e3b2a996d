"""Campaign control in the PostgreSQL job store: a campaign's state is the ``state``
column of its row in ``campaigns`` (beside its settings; no row, or ``active``: active),
which the claims read; a cancel ends the campaign's queued and deferred jobs in the same
transaction.

Claims by id leave out a paused campaign's jobs row by row (schema.not_paused). Claims of
what is due (and ``has_due``) read the paused campaigns first: with none they are what
they always were; with some they go campaign by campaign through the ``jobs_campaign``
index (``scope``), so that a paused campaign's backlog is never scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailspool.models import CampaignChange, CampaignState, State
from mailspool.queue.postgres.schema import JOB_COLUMNS, LEASE_SET, refs_from_rows
from mailspool.queue.store import Ref


async def set_state(
    con: Any, s: str, campaign: str, state: CampaignState, now: float
) -> tuple[CampaignChange, list[Ref]]:
    """Set the state of ``campaign`` (schema ``s``) unless it is cancelled; a cancel ends
    its queued and deferred jobs, a resume returns those due now (to announce)."""
    async with con.transaction():
        # a campaign without settings gets a row: '{}' (none, as campaign_settings reads)
        stored = await con.fetchval(
            f"INSERT INTO {s}.campaigns (name, settings, state) VALUES ($1, '{{}}', $2)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state"
            f" WHERE {s}.campaigns.state <> 'cancelled' RETURNING state",
            campaign,
            state.value,
        )
        # no row returned: the update was skipped, the campaign is cancelled
        now_in = CampaignState(stored) if stored else CampaignState.CANCELLED
        if now_in is CampaignState.CANCELLED and state is CampaignState.CANCELLED:
            # the trigger that writes job events fires for leased jobs only: none here
            done = await con.execute(
                f"UPDATE {s}.jobs SET state = 'cancelled', updated_at = $2, ready_at = $2"
                " WHERE campaign = $1 AND state IN ('queued', 'deferred')",
                campaign,
                now,
            )
            return CampaignChange(now_in, int(done.rpartition(" ")[2])), []
        if now_in is not CampaignState.ACTIVE:
            return CampaignChange(now_in), []
        rows = await con.fetch(
            f"SELECT id, campaign FROM {s}.jobs WHERE campaign = $1"
            " AND state IN ('queued', 'deferred') AND ready_at <= $2",
            campaign,
            now,
        )
        return CampaignChange(now_in), refs_from_rows(rows)


# every campaign with a job but those of $N (a loose index scan of jobs_campaign: one
# seek a campaign, where PostgreSQL has no skip scan)
_LIVE = (
    " AND campaign = ANY(ARRAY(WITH RECURSIVE names AS ((SELECT campaign AS name"
    " FROM {s}.jobs ORDER BY campaign LIMIT 1) UNION ALL SELECT (SELECT campaign FROM"
    " {s}.jobs WHERE campaign > names.name ORDER BY campaign LIMIT 1) FROM names WHERE"
    " names.name IS NOT NULL) SELECT name FROM names WHERE name IS NOT NULL"
    " AND name <> ALL(${n}::text[])))"
)


async def scope(
    con: Any, s: str, campaign: str | None, n: int
) -> tuple[str, list[Any], bool] | None:
    """How a claim of what is due takes ``campaign``'s jobs (None: any campaign's) in
    schema ``s``: a condition (`` AND ...``), its arguments (numbered from ``$n``), and
    whether it may take them oldest first; None when ``campaign`` is paused."""
    paused = [
        r["name"] for r in await con.fetch(f"SELECT name FROM {s}.campaigns WHERE state = 'paused'")
    ]
    if campaign is not None:
        return None if campaign in paused else (f" AND campaign = ${n}", [campaign], True)
    if not paused:
        return "", [], True
    # the order of due time would mean reading every due job of every campaign first
    return _LIVE.format(s=s, n=n), [paused], False


async def claim_due(
    con: Any, s: str, lease: list[Any], campaign: str | None, states: Sequence[State]
) -> list[Any]:
    """Lease the jobs due first of ``campaign`` (None: of any campaign not paused) in
    ``states``; ``lease``: the owner, the lease's end, now and the limit. The rows."""
    args = [*lease, [st.value for st in states]]
    found = await scope(con, s, campaign, len(args) + 1)
    if found is None:
        return []  # the campaign is paused
    where, more, ordered = found
    due = f"state = ANY($5::text[]) AND ready_at <= $3{where}"
    # MATERIALIZED: the jobs are picked once. As a plain "id IN (subquery)" the planner
    # may rescan the subquery for every row (a nested-loop semi-join), and each rescan,
    # skipping the rows this statement already leased, picked more: past the limit.
    rows: list[Any] = await con.fetch(
        f"WITH picked AS MATERIALIZED (SELECT id FROM {s}.jobs WHERE {due}"
        f"{' ORDER BY ready_at' if ordered else ''} LIMIT $4 FOR UPDATE SKIP LOCKED)"
        f" UPDATE {s}.jobs SET {LEASE_SET} WHERE id IN (SELECT id FROM picked)"
        f" AND {due} RETURNING {JOB_COLUMNS}",
        *args,
        *more,
    )
    return rows


async def has_due(
    con: Any, s: str, campaign: str | None, states: Sequence[State], now: float
) -> bool:
    """Whether a job of ``campaign`` (None: of any campaign not paused) in ``states`` is
    due at ``now``."""
    args: list[Any] = [[st.value for st in states], now]
    found = await scope(con, s, campaign, len(args) + 1)
    if found is None:
        return False  # the campaign is paused
    where, more, _ = found
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {s}.jobs WHERE state = ANY($1::text[])"
        f" AND ready_at <= $2{where})"
    )
    return bool(await con.fetchval(sql, *args, *more))


async def states(con: Any, s: str, campaigns: Sequence[str] | None) -> dict[str, CampaignState]:
    """The states of ``campaigns`` (None: every campaign) that are not active."""
    sql = f"SELECT name, state FROM {s}.campaigns WHERE state <> 'active'"
    if campaigns is None:
        rows = await con.fetch(sql)
    else:
        rows = await con.fetch(f"{sql} AND name = ANY($1::text[])", list(campaigns))
    return {r["name"]: CampaignState(r["state"]) for r in rows}
