"""``mailspool campaign list|show|pause|resume|cancel``: each campaign's state and counts,
and control of a campaign shared by every worker on the queue (docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.cli.figures import campaign_rows, counts_line, safe, window_line
from mailspool.config import Settings
from mailspool.models import CampaignState
from mailspool.queue import Queue
from mailspool.wiring import open_existing_queue

#: the state each action asks for
ACTIONS = {
    "pause": CampaignState.PAUSED,
    "resume": CampaignState.ACTIVE,
    "cancel": CampaignState.CANCELLED,
}


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    async with open_existing_queue(settings) as queue:
        if args.action == "list":
            return await _list(queue, settings.json_output)
        name = settings.campaign  # the NAME argument, checked as --campaign is
        assert name is not None  # a required argument
        if (await queue.stats(name)).total == 0:
            print(f"no campaign {name} in this queue", file=sys.stderr)
            return ExitCode.SOME_FAILED
        if args.action == "show":
            return await _show(queue, name, settings.json_output)
        return await _change(queue, name, ACTIONS[args.action], settings.json_output)


async def _list(queue: Queue, as_json: bool) -> ExitCode:
    rows = await campaign_rows(queue, await queue.campaigns())
    if as_json:
        print(json.dumps(rows))
        return ExitCode.OK
    if not rows:
        print("no campaigns in this queue")
    for r in rows:
        print(f"{r['campaign']}  {r['state']}  {counts_line(r).partition(': ')[2]}")
    return ExitCode.OK


async def _show(queue: Queue, name: str, as_json: bool) -> ExitCode:
    (row,) = await campaign_rows(queue, [name])
    settings = await queue.campaign_settings(name)
    row["retry"] = settings.get("retry")
    if as_json:
        print(json.dumps(row))
        return ExitCode.OK
    print(f"campaign {name}: {row['state']}")
    print(f"  {counts_line(row).partition(': ')[2]}")
    print(f"  pending={row['pending']}  (not final: queued + sending + deferred)")
    if row.get("schedule"):
        print(f"  {window_line(row)}")
    if row["retry"]:
        retry = ", ".join(f"{k}={v}" for k, v in sorted(row["retry"].items()))
        print(f"  retry schedule: {retry}")
    if row["last_error"]:
        print(f"  last error: {safe(str(row['last_error']))}")
    return ExitCode.OK


async def _change(queue: Queue, name: str, state: CampaignState, as_json: bool) -> ExitCode:
    change = await queue.set_campaign_state(name, state)
    out: dict[str, Any] = {
        "campaign": name,
        "state": change.state.value,
        "cancelled": change.cancelled,
    }
    if change.state is not state:  # asked to pause or resume a cancelled campaign
        verb = "paused" if state is CampaignState.PAUSED else "resumed"
        print(f"campaign {name} is cancelled: it cannot be {verb}", file=sys.stderr)
        if as_json:
            print(json.dumps(out))
        return ExitCode.SOME_FAILED
    if as_json:
        print(json.dumps(out))
    elif state is CampaignState.CANCELLED:
        print(f"campaign {name}: cancelled; {change.cancelled} queued or deferred jobs cancelled")
    else:
        print(f"campaign {name}: {change.state.value}")
    return ExitCode.OK
