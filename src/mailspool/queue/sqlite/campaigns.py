"""Campaign control in the SQLite queue: a campaign's state is the ``state`` column of its
row in ``campaigns`` (beside its settings; no row, or ``active``: active), read by the
claims, and a cancel ends its queued and deferred jobs in the same transaction.

A claim reads the paused campaigns first, in its own transaction. With none (the usual
case) it is what it always was; with some, it takes jobs campaign by campaign through
the ``jobs_campaign`` index, the paused ones left out: a paused campaign's backlog is
never scanned (scanning it on every claim would slow down every other campaign).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from mailspool.models import CampaignChange, CampaignState

# every campaign with a job, one index seek each (jobs_campaign), as a skip scan would
_CAMPAIGNS = (
    "WITH RECURSIVE names(name) AS (SELECT min(campaign) FROM jobs UNION ALL"
    " SELECT (SELECT min(campaign) FROM jobs WHERE campaign > names.name) FROM names"
    " WHERE names.name IS NOT NULL) "
)
_NOT_PAUSED = (
    "campaign IN (SELECT name FROM names WHERE name IS NOT NULL AND name NOT IN"
    " (SELECT name FROM campaigns WHERE state = 'paused')) AND "
)

# a cancelled campaign stays cancelled; a campaign without settings gets a row ('{}':
# none, as campaign_settings reads it)
_SET = (
    "INSERT INTO campaigns (name, settings, state) VALUES (?, '{}', ?)"
    " ON CONFLICT (name) DO UPDATE SET state = excluded.state"
    " WHERE campaigns.state != 'cancelled'"
)
# the trigger that writes job events fires for leased jobs only: a cancel writes none
_CANCEL_JOBS = (
    "UPDATE jobs SET state = 'cancelled', updated_at = ?, ready_at = ?"
    " WHERE campaign = ? AND state IN ('queued', 'deferred')"
)


def claimable(db: sqlite3.Connection, campaign: str | None) -> tuple[str, str, list[Any]] | None:
    """What a claim of ``campaign``'s jobs (None: any campaign's) may take: a prefix of
    its statement, a condition on the jobs (ending with AND) and its arguments; None when
    ``campaign`` is paused (campaigns_state keeps the look-up cheap)."""
    paused = {name for (name,) in db.execute("SELECT name FROM campaigns WHERE state = 'paused'")}
    if campaign is not None:
        return None if campaign in paused else ("", "campaign = ? AND ", [campaign])
    return (_CAMPAIGNS, _NOT_PAUSED, []) if paused else ("", "", [])


def set_state(
    db: sqlite3.Connection, campaign: str, state: CampaignState, now: float
) -> CampaignChange:
    """The campaign's new state (within the caller's transaction), and its queued and
    deferred jobs cancelled with it."""
    db.execute(_SET, (campaign, state.value))
    (stored,) = db.execute("SELECT state FROM campaigns WHERE name = ?", (campaign,)).fetchone()
    now_in = CampaignState(stored)
    if now_in is not CampaignState.CANCELLED or state is not CampaignState.CANCELLED:
        return CampaignChange(now_in)
    return CampaignChange(now_in, db.execute(_CANCEL_JOBS, (now, now, campaign)).rowcount)


def states(db: sqlite3.Connection, campaigns: Sequence[str] | None) -> dict[str, CampaignState]:
    """The states of ``campaigns`` (None: every campaign) that are not active."""
    sql = "SELECT name, state FROM campaigns WHERE state != 'active'"
    if campaigns is None:
        rows = db.execute(sql).fetchall()
    else:
        rows = []
        names = list(dict.fromkeys(campaigns))
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += db.execute(f"{sql} AND name IN ({marks})", chunk).fetchall()
    return {name: CampaignState(state) for name, state in rows}
