"""``mailspool status``: job counts by state, per campaign, its state (paused,
cancelled), the returned mail (bounces, complaints) recorded on its jobs, and a
scheduled campaign's send windows; ``--watch`` shows them live (cli/watch.py)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.cli.figures import campaign_rows, counts_line, iso, safe, window_line
from mailspool.config import Settings
from mailspool.delivery.published import PROVIDERS_KEY, published
from mailspool.queue import Queue
from mailspool.queue.returns import ReturnEvent
from mailspool.wiring import open_existing_queue


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    async with open_existing_queue(settings) as queue:
        if args.job:
            return await _job(queue, args.job, settings.json_output)
        if settings.campaign and settings.campaign not in await queue.campaigns():
            print(f"no campaign {settings.campaign} in this queue", file=sys.stderr)
            return ExitCode.SOME_FAILED
        if args.watch:
            from mailspool.cli.watch import watch  # rich: only here

            return await watch(queue, settings.campaign, as_json=settings.json_output)
        campaigns = [settings.campaign] if settings.campaign else await queue.campaigns()
        relays = await published(queue)
        providers = await published(queue, PROVIDERS_KEY)
        rows = [
            r
            | ({"relays": relays} if relays else {})
            | ({"providers": providers} if providers else {})
            for r in await campaign_rows(queue, campaigns)
        ]
    if settings.json_output:
        print(json.dumps(rows if not settings.campaign else rows[0]))
        return ExitCode.OK
    if not rows:
        print("no campaigns in this queue")
    for r in rows:
        print(counts_line(r))
        if r.get("schedule"):
            print(f"  {window_line(r)}")
        if r["last_error"]:
            print(f"  last error: {safe(str(r['last_error']))}")
    for relay in relays:
        print(relay_line(relay))
    for provider in providers:
        print(provider_line(provider))
    return ExitCode.OK


def provider_line(p: dict[str, Any]) -> str:
    """A provider's shaping as its workers last published it."""

    def rate(value: float | None) -> str:
        return "none" if value is None else f"{value:g}/s"

    line = (
        f"provider {p['name']}: rate {rate(p.get('rate'))} (ceiling {rate(p.get('ceiling'))})"
        f"  sent={p['sent']}  throttled={p['throttled']}"
    )
    if p.get("suspended_for"):
        line += f"  suspended for {p['suspended_for']:g}s"
    if p.get("last_reply"):
        line += f"  last throttling reply {iso(float(p['last_reply_at']))}: {safe(p['last_reply'])}"
    return line + f"  as of {iso(p['at'])}"


def relay_line(r: dict[str, Any]) -> str:
    """A relay of a relay set as its workers last published it."""
    why = f" ({safe(r['reason'])})" if r["state"] != "up" and r["reason"] else ""
    return (
        f"relay {r['name']}: {r['state']}{why}  sent={r['sent']}  failed={r['failed']}"
        f"  as of {iso(r['at'])}"
    )


def return_row(event: ReturnEvent | None) -> dict[str, Any] | None:
    """A job's latest returned-mail event as ``status --job --json`` shows it."""
    if event is None:
        return None
    return {
        "kind": event.kind.value,
        "recipient": event.address,
        "status": event.status,
        "permanent": event.permanent,
        "diagnostic": event.diagnostic,
        "received_at": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="seconds"),
    }


async def _job(queue: Queue, job_id: str, as_json: bool) -> ExitCode:
    """``status --job ID``: one job's state, and the bounce or complaint received last."""
    job = await queue.get(job_id)
    if job is None:
        print(f"no job {safe(job_id)}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    returned = return_row(await queue.returns.latest(job.id))
    if as_json:
        row = {
            "id": job.id,
            "campaign": job.campaign,
            "state": job.state.value,
            "attempts": job.attempts,
            "last_reply": job.last_reply,
            "message_id": job.message_id,
            "last_return": returned,
        }
        print(json.dumps(row))
        return ExitCode.OK
    print(f"{job.id}: campaign={job.campaign}  state={job.state.value}  attempts={job.attempts}")
    if job.last_reply:
        print(f"  last reply: {safe(job.last_reply)}")
    if returned is not None:
        status = returned["status"] or "-"
        kind = returned["kind"] if returned["permanent"] else f"{returned['kind']} (not permanent)"
        print(
            f"  returned: {kind} {status} {safe(returned['recipient'])} {returned['received_at']}"
        )
        if returned["diagnostic"]:
            print(f"  diagnostic: {safe(returned['diagnostic'])}")
    return ExitCode.OK
