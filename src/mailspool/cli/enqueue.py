"""``mailspool enqueue``: queue every row of a file; workers deliver them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import campaign_halted, source_path
from mailspool.config import Settings
from mailspool.intake.sources import open_source
from mailspool.models import CampaignState
from mailspool.wiring import build_pool, default_campaign, load_renderer, make_producer, open_queue


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    path = source_path(args)
    renderer = load_renderer(settings)
    campaign = settings.campaign or default_campaign(path, settings)
    source = open_source(path)
    pool = build_pool(settings, renderer, campaign, path, delivering=False)
    async with contextlib.AsyncExitStack() as stack:
        if pool is not None:
            stack.push_async_callback(pool.aclose)
        queue = await stack.enter_async_context(open_queue(settings))
        # a paused campaign takes rows: they wait for the resume
        state, halted = await campaign_halted(queue, campaign, "queued", refuse_paused=False)
        if halted is not None:
            return halted
        producer = await make_producer(queue, renderer, campaign, settings, pool=pool)
        started = time.monotonic()
        rep = await producer.run(source.rows())
    out = {
        "campaign": campaign,
        "rows": rep.rows,
        "queued": rep.queued,
        "new": rep.new,
        # queued by an earlier run and not final yet: left as they are
        "pending": rep.pending,
        "rejected": rep.rejected,
        "duplicates": rep.duplicates,
        "skipped_already_sent": rep.already_sent,
        # every recipient suppressed: recorded as final, never sent; not a failure
        "suppressed": rep.suppressed,
        "unsigned": rep.unsigned,
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    if rep.rejects_file:
        out["rejects_file"] = str(rep.rejects_file)
    if settings.json_output:
        print(json.dumps(out))
    else:
        print(
            f"campaign {campaign}: {rep.rows} rows, {rep.queued} queued ({rep.new} new),"
            f" {rep.rejected} rejected, {rep.duplicates} duplicates,"
            f" {rep.already_sent} already sent, {rep.suppressed} suppressed",
            file=sys.stderr,
        )
        if rep.unsigned:
            print(
                f"  {rep.unsigned} without a DKIM signature (no --dkim key for their From domain)",
                file=sys.stderr,
            )
        if rep.rejects_file:
            print(f"  rejected rows: {rep.rejects_file}", file=sys.stderr)
        if state is CampaignState.PAUSED:
            print(
                f"  campaign {campaign} is paused: its jobs wait until"
                f" `mailspool campaign resume {campaign}`",
                file=sys.stderr,
            )
    return ExitCode.SOME_FAILED if rep.rejected else ExitCode.OK
