"""Campaign control in the PostgreSQL job store: a campaign's state is the ``state``
column of its row in ``campaigns`` (beside its settings; no row, or ``active``: active),
which the claims read (schema.not_paused); a cancel ends the campaign's queued and
deferred jobs in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailspool.models import CampaignChange, CampaignState
from mailspool.queue.postgres.schema import refs_from_rows
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


async def states(con: Any, s: str, campaigns: Sequence[str] | None) -> dict[str, CampaignState]:
    """The states of ``campaigns`` (None: every campaign) that are not active."""
    sql = f"SELECT name, state FROM {s}.campaigns WHERE state <> 'active'"
    if campaigns is None:
        rows = await con.fetch(sql)
    else:
        rows = await con.fetch(f"{sql} AND name = ANY($1::text[])", list(campaigns))
    return {r["name"]: CampaignState(r["state"]) for r in rows}
