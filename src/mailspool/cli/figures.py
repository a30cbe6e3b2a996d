"""A campaign's figures as ``status``, ``status --watch`` and ``mailspool campaign`` show
them: its jobs counted by state, its state (active, paused, cancelled), returned mail,
its send windows; and how the commands print times and text from outside."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mailspool.models import CampaignState, CampaignStats, State
from mailspool.queue import Queue
from mailspool.queue.returns import clean_text

#: the counts a line shows, in this order (--json gives every state, 0 included)
SHOWN = (
    "queued", "sending", "deferred", "sent", "dead", "suppressed", "cancelled", "ambiguous",
    "total",
)  # fmt: skip
#: the counts of returned mail (queue/returns.py ReturnCounts), shown when one is not zero
RETURNS = ("bounced", "soft_bounced", "complained")


async def campaign_rows(queue: Queue, campaigns: Sequence[str]) -> list[dict[str, Any]]:
    """Each campaign's figures, as ``status --json`` gives them."""
    states = await queue.campaign_states(campaigns) if campaigns else {}
    rows = []
    for c in campaigns:
        st = await queue.stats(c)
        returned = await queue.returns.counts(c)
        schedule = (await queue.campaign_settings(c)).get("schedule")
        rows.append(
            {
                "campaign": c,
                "state": states.get(c, CampaignState.ACTIVE).value,
                # every state, 0 included: the keys do not come and go
                **{state.value: st.get(state) for state in State},
                # not final: queued + sending + deferred, as send's summary counts them
                "pending": st.pending,
                "ambiguous": st.ambiguous,
                "total": st.total,
                "last_error": st.last_error,
                "bounced": returned.bounced,
                "soft_bounced": returned.soft_bounced,
                "complained": returned.complained,
                **waiting(schedule, st),
            }
        )
    return rows


def counts_line(row: dict[str, Any]) -> str:
    """``may [paused]: queued=3  sending=0 ...``: a campaign's counts on one line (its
    state when not active; returned mail once there is some)."""
    shown = SHOWN + (RETURNS if any(row.get(k) for k in RETURNS) else ())
    counts = "  ".join(f"{s}={row.get(s, 0)}" for s in shown)
    return f"{row['campaign']}{marker(row)}: {counts}"


def marker(row: dict[str, Any]) -> str:
    """`` [paused]`` or `` [cancelled]`` after a campaign's name; nothing when active."""
    return "" if row["state"] == CampaignState.ACTIVE.value else f" [{row['state']}]"


def waiting(schedule: dict[str, Any] | None, st: CampaignStats) -> dict[str, Any]:
    """A scheduled campaign's send time and windows, how many of its jobs wait (queued
    or deferred) and when the next is due."""
    if not schedule:
        return {}
    due = st.next_due
    return {
        "schedule": schedule,
        "waiting": st.get(State.QUEUED) + st.get(State.DEFERRED),
        "next_due": iso(due) if due is not None else None,
    }


def window_line(r: dict[str, Any]) -> str:
    sch = r["schedule"]
    parts = []
    if sch.get("windows"):
        parts.append(f"send windows {sch['windows']} ({sch.get('timezone') or 'UTC'})")
    if sch.get("send_at"):
        parts.append(f"from {iso(float(sch['send_at']))}")
    line = "; ".join(parts) + f": {r['waiting']} waiting"
    return line + (f", the next due {r['next_due']}" if r["next_due"] else "")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def safe(text: str) -> str:
    """Text from outside (a remote server's reply or diagnostic) fit for a terminal: no
    control characters, escapes or line breaks."""
    return clean_text(text, len(text))
