"""``mailspool status``: job counts by state, per campaign."""

from __future__ import annotations

import argparse
import json

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.models import State
from mailspool.wiring import open_queue

STATES = ("queued", "sending", "deferred", "sent", "dead", "suppressed", "ambiguous", "total")


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    async with open_queue(settings) as queue:
        campaigns = [args.campaign] if args.campaign else await queue.campaigns()
        rows = []
        for c in campaigns:
            st = await queue.stats(c)
            rows.append(
                {
                    "campaign": c,
                    **st.counts,
                    "suppressed": st.get(State.SUPPRESSED),
                    "ambiguous": st.ambiguous,
                    "total": st.total,
                    "last_error": st.last_error,
                }
            )
    if args.json:
        print(json.dumps(rows if not args.campaign else rows[0]))
        return ExitCode.OK
    if not rows:
        print("no campaigns in this queue")
    for r in rows:
        counts = "  ".join(f"{s}={r.get(s, 0)}" for s in STATES)
        print(f"{r['campaign']}: {counts}")
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
    return ExitCode.OK
