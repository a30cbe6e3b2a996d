"""Campaign control in the SQLite queue: a campaign's state is the ``state`` column of its
row in ``campaigns`` (beside its settings; no row, or ``active``: active), read by the
claims, and a cancel ends its queued and deferred jobs in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailspool.models import CampaignChange, CampaignState

#: a condition of claims: no job of a paused campaign (campaigns_state keeps it cheap)
NOT_PAUSED = "campaign NOT IN (SELECT name FROM campaigns WHERE state = 'paused')"

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
